"""Campaigns through the service and the workers: numbers with tags, a run
that holds, sends at its pace and settles per number; pause, resume, stop;
chosen numbers; re-run by status; contact files; reports. Money is checked
against the ledger to the unit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import eventually, make_account
from ujumbe.core.errors import ChannelUnavailable, Conflict, InsufficientCredit, Invalid, NotFound
from ujumbe.core.pricing import to_units
from ujumbe.runtime import Platform


async def account_of(platform: Platform, **kw: Any) -> Any:
    made = await make_account(platform, **kw)
    return await platform.accounts.get(made["account_id"])


async def ledger(platform: Platform, account_id: str) -> list[dict[str, Any]]:
    rows = await platform.store.read(lambda tx: tx.fetch(
        "SELECT kind, amount, balance_after, campaign_id, note FROM ledger WHERE account_id = ? ORDER BY id", account_id))
    return [dict(r) for r in rows]


async def balance(platform: Platform, account_id: str) -> int:
    return await platform.credits.balance(account_id)


async def settled(platform: Platform, account: Any, cid: int) -> dict[str, Any]:
    async def done() -> Any:
        c = await platform.campaigns.get(account, cid)
        return c if c["status"] in ("completed", "terminated") else None

    return await eventually(done, timeout=30)


async def money_is_exact(platform: Platform, account: Any, cid: int, start_balance: int) -> None:
    """Holds come back in full (released), what the numbers consumed is what
    their messages cost, and the balance is the start less that."""
    rows = await ledger(platform, account.id)
    campaign_rows = [r for r in rows if r["campaign_id"] == cid]
    held = -sum(r["amount"] for r in campaign_rows if r["kind"] == "hold")
    released = sum(r["amount"] for r in campaign_rows if r["kind"] == "release")
    assert held == released
    nums = await platform.campaigns.numbers(account, cid)
    consumed = sum(n["credit_consumed_units"] for n in nums)
    costs = await platform.store.read(lambda tx: tx.fetchval(
        "SELECT coalesce(sum(m.cost), 0) FROM messages m WHERE m.account_id = ?", account.id))
    assert consumed == costs
    assert await balance(platform, account.id) == start_balance - consumed
    assert sum(r["amount"] for r in rows) == start_balance - consumed  # the ledger explains the balance
    assert (await platform.campaigns.get(account, cid))["held_units"] == 0


async def test_a_campaign_renders_holds_sends_and_settles(platform: Platform) -> None:
    account = await account_of(platform, credits="100")
    start = await balance(platform, account.id)
    camp, bad = await platform.campaigns.create(
        account, name="Launch", services="SMS", message="Habari {tags_name}, umri {tags_age}",
        numbers_in=[("0708400100", {"tags_name": "Wanjiru", "tags_age": 25.0}),
                    (708400101.0, {"tags_name": "Otieno"}),
                    ("0708400001", {}),   # rejected at submit by the simulator: refunded
                    ("12", {}), ("0708400100", {})],
    )
    assert [(e.row, e.reason) for e in bad][0][0] == 4 and "not a valid phone number" in bad[0].reason
    assert bad[1].row == 5 and "already in this campaign" in bad[1].reason
    assert camp["usable_tags"] == ["tags_age", "tags_name"]
    run = await platform.campaigns.begin(account, camp["id"])
    assert run["numbers"] == 3 and run["held"] == to_units(3)
    assert run["hold_note"] == "3 credits on hold for Launch campaign"
    assert await balance(platform, account.id) == start - to_units(3)
    with pytest.raises(Conflict):
        await platform.campaigns.begin(account, camp["id"], statuses=["completed"])
    await settled(platform, account, camp["id"])

    async def all_final() -> Any:
        nums = await platform.campaigns.numbers(account, camp["id"])
        return nums if all(n["status"] not in ("scheduled", "running") for n in nums) else None

    nums = {n["number"]: n for n in await eventually(all_final)}
    assert nums["254708400100"]["status"] == "completed" and nums["254708400100"]["credit_consumed_units"] == to_units(1)
    assert nums["254708400001"]["status"] == "failed" and nums["254708400001"]["credit_consumed_units"] == 0
    texts = {m.recipient: m.body for m in platform.simulator.sent}  # type: ignore[union-attr]
    assert texts["254708400100"] == "Habari Wanjiru, umri 25"
    assert texts["254708400101"] == "Habari Otieno, umri "
    await money_is_exact(platform, account, camp["id"], start)

    # re-run the failed one only, with a new text
    run = await platform.campaigns.begin(account, camp["id"], statuses=["failed, hungup"], message="Tena {tags_name}")
    assert run["numbers"] == 1
    await settled(platform, account, camp["id"])
    await eventually(all_final)
    await money_is_exact(platform, account, camp["id"], start)
    summary = await platform.campaigns.summary(account, camp["id"])
    assert summary["by_status"]["completed"] == 2 and summary["by_status"]["failed"] == 1
    assert summary["credit_consumed"] == 2


async def test_phone_campaigns_need_the_voice_channel(platform: Platform) -> None:
    account = await account_of(platform)
    platform.messaging.channels = platform.messaging.channels - {"voice"}  # a server without one
    with pytest.raises(ChannelUnavailable) as err:
        await platform.campaigns.create(account, name="Calls", services="PHONE")
    assert err.value.code == "channel_not_configured"


async def test_a_run_the_balance_cannot_cover_holds_nothing(platform: Platform) -> None:
    account = await account_of(platform, credits="1")
    camp, _ = await platform.campaigns.create(
        account, name="Big", services="SMS", message="Hi", numbers_in=[("0708400100", {}), ("0708400101", {})])
    with pytest.raises(InsufficientCredit) as err:
        await platform.campaigns.begin(account, camp["id"])
    assert "needs 2 credits on hold and the balance is 1" in err.value.message
    assert await balance(platform, account.id) == to_units(1)
    assert (await platform.campaigns.get(account, camp["id"]))["status"] == "not started"


async def test_pace_pause_resume_and_stop(platform: Platform) -> None:
    account = await account_of(platform, credits="1000")
    start = await balance(platform, account.id)
    entries = [(f"07084{i:05d}", {}) for i in range(1000, 1060)]
    camp, _ = await platform.campaigns.create(account, name="Paced", services="SMS", message="Hi", rate=20,
                                              numbers_in=entries)
    began = time.monotonic()
    await platform.campaigns.begin(account, camp["id"])

    async def sent_at_least(n: int) -> Any:
        nums = await platform.campaigns.numbers(account, camp["id"])
        out = [x for x in nums if x["status"] != "scheduled"]
        return out if len(out) >= n else None

    await eventually(lambda: sent_at_least(20))
    # 20 a second: 20 numbers take about a second, never all 60 at once
    elapsed = time.monotonic() - began
    out = len(await sent_at_least(0))
    assert out <= 20 * elapsed + 20, (out, elapsed)
    paused = await platform.campaigns.pause(account, camp["id"])
    assert paused["status"] == "paused"
    await asyncio.sleep(0.3)  # a send in flight when paused may still land
    frozen = len(await sent_at_least(0))
    await asyncio.sleep(0.5)
    assert len(await sent_at_least(0)) == frozen  # nothing is sent while paused
    await platform.campaigns.resume(account, camp["id"])
    stopped = await platform.campaigns.stop(account, camp["id"])
    assert stopped["status"] == "terminated"
    nums = await platform.campaigns.numbers(account, camp["id"])
    assert {n["status"] for n in nums} <= {"terminated", "running", "completed", "failed"}
    assert any(n["status"] == "terminated" for n in nums)

    async def nothing_running() -> Any:
        ns = await platform.campaigns.numbers(account, camp["id"])
        return all(n["status"] != "running" for n in ns)

    await eventually(nothing_running)
    await money_is_exact(platform, account, camp["id"], start)


async def test_chosen_numbers_only(platform: Platform) -> None:
    account = await account_of(platform)
    camp, _ = await platform.campaigns.create(
        account, name="Few", services="SMS", message="Hi",
        numbers_in=[("0708400100", {}), ("0708400101", {}), ("0708400102", {})])
    nums = await platform.campaigns.numbers(account, camp["id"])
    run = await platform.campaigns.begin(account, camp["id"], individual=[nums[0]["id"], nums[2]["id"]])
    assert run["numbers"] == 2 and run["held"] == to_units(2)
    await settled(platform, account, camp["id"])
    statuses = [n["status"] for n in await platform.campaigns.numbers(account, camp["id"])]
    assert statuses[1] == "not started"
    with pytest.raises(Invalid):
        await platform.campaigns.begin(account, camp["id"], individual=[999999])


async def test_concurrent_campaigns_and_sends_keep_the_money_exact(platform: Platform) -> None:
    """Several campaigns begun, stopped and sent at once, beside ordinary
    sends, on one account: every hold is released, the ledger explains the
    balance, and each number consumed what its message cost."""
    from ujumbe.services.messaging import SendRequest

    account = await account_of(platform, credits="10000")
    start = await balance(platform, account.id)
    camps = []
    for k in range(4):
        c, _ = await platform.campaigns.create(
            account, name=f"C{k}", services="SMS", message="Hi {tags_n}", rate=100,
            # ...0001 is rejected at submit (refunded); none ends in 0005 (no receipt ever)
            numbers_in=[(f"0708{k}{i:05d}", {"tags_n": i}) for i in range(10, 70)] + [(f"0708{k}00001", {})],
        )
        camps.append(c)
    await asyncio.gather(*(platform.campaigns.begin(account, c["id"]) for c in camps),
                         *(platform.messaging.send(account, SendRequest(recipients=["0708400300"], text="x"))
                           for _ in range(10)))
    await asyncio.sleep(0.05)
    await asyncio.gather(platform.campaigns.stop(account, camps[0]["id"]),
                         platform.campaigns.stop(account, camps[1]["id"]))
    for c in camps:
        await settled(platform, account, c["id"])

    async def quiet() -> Any:
        open_ = await platform.store.read(lambda tx: tx.fetchval(
            "SELECT count(*) FROM campaign_numbers WHERE status IN ('scheduled', 'running')"))
        return open_ == 0

    await eventually(quiet, timeout=30)
    rows = await ledger(platform, account.id)
    assert sum(r["amount"] for r in rows) == await balance(platform, account.id)
    kinds = {r["kind"] for r in rows}
    assert {"topup", "hold", "release", "charge", "refund"} <= kinds, kinds  # ...0001 is refunded
    refunds = sum(r["amount"] for r in rows if r["kind"] == "refund")
    charges = -sum(r["amount"] for r in rows if r["kind"] == "charge")
    for c in camps:
        cr = [r for r in rows if r["campaign_id"] == c["id"]]
        assert -sum(r["amount"] for r in cr if r["kind"] == "hold") == sum(
            r["amount"] for r in cr if r["kind"] == "release")
        assert (await platform.campaigns.get(account, c["id"]))["held_units"] == 0
    consumed = await platform.store.read(lambda tx: tx.fetchval(
        "SELECT sum(credit_consumed) FROM campaign_numbers WHERE account_id = ?", account.id))
    campaign_cost = await platform.store.read(lambda tx: tx.fetchval(
        "SELECT coalesce(sum(m.cost), 0) FROM messages m JOIN campaign_numbers n ON n.message_id = m.id "
        "WHERE m.account_id = ?", account.id))
    other_cost = await platform.store.read(lambda tx: tx.fetchval(
        "SELECT coalesce(sum(cost), 0) FROM messages WHERE account_id = ? AND recipient = '254708400300'", account.id))
    assert consumed == campaign_cost
    assert charges - refunds == consumed + other_cost  # what was charged, less refunds, is what was consumed
    assert await balance(platform, account.id) == start - consumed - other_cost


async def test_a_scheduled_run_starts_at_its_time_in_the_accounts_zone(platform: Platform) -> None:
    import datetime as dt

    account = await account_of(platform, region="NP")
    await platform.campaigns.set_time_zone(account, "Asia/Kathmandu")
    camp, _ = await platform.campaigns.create(account, name="Later", services="SMS", message="Hi",
                                              numbers_in=[("9843818700", {})])
    # two seconds from now, written as a Kathmandu wall-clock time without an offset
    at = dt.datetime.now(dt.timezone(dt.timedelta(hours=5, minutes=45))) + dt.timedelta(seconds=2)
    run = await platform.campaigns.begin(account, camp["id"], schedule=at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert run["status"] == "scheduled"
    assert abs(run["schedule_at"] - int(at.timestamp() * 1000)) < 1000
    nums = await platform.campaigns.numbers(account, camp["id"])
    assert nums[0]["status"] == "scheduled" and platform.simulator is not None
    assert not [m for m in platform.simulator.sent if m.recipient == "9779843818700"]
    c = await settled(platform, account, camp["id"])
    assert c["status"] == "completed"
    sent = [m for m in platform.simulator.sent if m.recipient == "9779843818700"]
    assert sent and time.time() * 1000 >= run["schedule_at"]


async def test_one_send_with_a_text_per_recipient(platform: Platform) -> None:
    """What campaign batches use: each recipient its own text, encoding, parts
    and price in one request; a text too long rejects its recipient alone."""
    from ujumbe.services.messaging import SendRequest

    account = await account_of(platform, credits="100")
    result = await platform.messaging.send(account, SendRequest(
        recipients=["0708400100", "0708400101", "0708400102"],
        texts=["Habari Wanjiru", "नमस्कार " * 10, "x" * 2000],
    ))
    by_to = {r.to: r for r in result.recipients}
    assert by_to["254708400100"].parts == 1 and by_to["254708400100"].cost == to_units(1)
    assert by_to["254708400101"].parts == 2  # 90 UCS-2 characters: two parts of 67
    assert by_to["254708400102"].state == "rejected" and by_to["254708400102"].error_code == "message_too_long"
    assert result.cost == to_units(3)
    msgs = {m["recipient"]: m for m in await platform.messaging.messages(account.id, limit=10)}
    assert msgs["254708400100"]["body"] == "Habari Wanjiru" and msgs["254708400100"]["encoding"] == "gsm7"
    assert msgs["254708400101"]["encoding"] == "ucs2"


async def test_report_files_go_with_a_newer_report_and_with_the_campaign(platform: Platform) -> None:
    # a report's csv/xlsx (and an import's uploaded contacts) are kept in job_files with their job
    account = await account_of(platform)
    camp, _ = await platform.campaigns.create(account, name="Files", services="SMS", message="Hi",
                                              numbers_in=[("0708400700", {})])

    async def files_of(job_id: int) -> list[str]:
        rows = await platform.store.read(lambda tx: tx.fetch("SELECT name FROM job_files WHERE job_id = ?", job_id))
        return sorted(r[0] for r in rows)

    first = await platform.jobs.wait(account, (await platform.jobs.start_report(account, camp["id"]))["id"], 30)
    assert first["status"] == "done" and await files_of(first["id"]) == ["report.csv", "report.xlsx"]
    await platform.campaigns.add_numbers(account, camp["id"], [("0708400701", {})])
    second = await platform.jobs.wait(account, (await platform.jobs.start_report(account, camp["id"]))["id"], 30)
    assert second["status"] == "done"
    # the newer report replaces the older one: its record and its files are gone together
    assert await files_of(first["id"]) == []
    with pytest.raises(NotFound):
        await platform.jobs.get(account, first["id"])
    _, _, name = await platform.jobs.file(account, second["id"], "csv")
    assert name == f"campaign-{camp['id']}-report.csv"

    await platform.campaigns.delete(account, camp["id"])
    assert await files_of(second["id"]) == []
    with pytest.raises(NotFound) as err:
        await platform.jobs.file(account, second["id"], "csv")
    assert err.value.code == "job_not_found"
    left = await platform.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM jobs WHERE campaign_id = ?", camp["id"]))
    assert left == 0
