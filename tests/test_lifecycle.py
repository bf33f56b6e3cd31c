"""The life cycle against a real store: receipts early, late, twice or never."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import eventually, make_account, make_settings
from ujumbe.channels.base import Channel, Outbound, Receipt, SendError, Submitted
from ujumbe.core.states import State
from ujumbe.runtime import Platform
from ujumbe.services.messaging import SendRequest
from ujumbe.services.reports import Reports, apply_receipts
from ujumbe.store import Tx, now_ms
from ujumbe.store import messages as q
from ujumbe.workers.dispatch import Dispatcher, Outcome, Router
from ujumbe.workers.schedules import Sweeper


@pytest.fixture
async def idle(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    """A platform with its store open but no workers: the test plays the channel."""
    p = Platform(make_settings(tmp_path, database_url))
    await p.open()
    try:
        yield p
    finally:
        await p.store.close()


async def send_one(p: Platform, to: str = "0708400000", text: str = "hello", **kw: object) -> dict:
    account = await make_account(p)
    acc = await p.accounts.get(account["account_id"])
    result = await p.messaging.send(acc, SendRequest(recipients=[to], text=text, **kw))  # type: ignore[arg-type]
    return await p.messaging.message(acc.id, result.recipients[0].message_id)  # type: ignore[arg-type]


async def submit(p: Platform, msg: dict, operator_ids: list[str], channel: str = "smsc-a") -> None:
    dispatcher = Dispatcher(p.store, Router({}))
    await p.store.run(lambda tx: dispatcher._record(tx, [Outcome(msg["id"], 1, channel, submitted=Submitted(operator_ids))]))


async def receipt(p: Platform, op_id: str, state: State, channel: str = "smsc-a") -> None:
    await p.store.run(lambda tx: p.reports._apply(tx, [Receipt(channel, op_id, state, now_ms(), raw=state.value)], []))


async def test_receipt_before_its_submit_is_recorded_is_not_lost(idle: Platform) -> None:
    msg = await send_one(idle)
    # The SMSC reports in decimal before we stored its hex answer to submit_sm.
    await receipt(idle, "2748", State.DELIVERED)
    parked = await idle.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM early_receipts"))
    assert parked == 1
    await submit(idle, msg, ["ABC"])
    after = await idle.messaging.message(msg["account_id"], msg["id"])
    assert after["state"] == "delivered"
    assert await idle.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM early_receipts")) == 0


async def test_final_state_is_never_overwritten_and_late_receipts_are_kept(idle: Platform) -> None:
    msg = await send_one(idle)
    await submit(idle, msg, ["m1"])
    await receipt(idle, "m1", State.DELIVERED)
    await receipt(idle, "m1", State.UNDELIVERED)  # late and contradictory
    await receipt(idle, "m1", State.SUBMITTED)  # an ENROUTE after the end
    after = await idle.messaging.message(msg["account_id"], msg["id"])
    assert after["state"] == "delivered"
    states = [e["state"] for e in after["events"]]
    assert states[:4] == ["accepted", "queued", "submitted", "delivered"]
    assert len(states) == 6  # the two late receipts are recorded as events, nothing more


async def test_one_failed_part_fails_the_message_whatever_order_receipts_come_in(idle: Platform) -> None:
    msg = await send_one(idle, text="y" * 400)  # three parts
    assert msg["parts"] == 3
    await submit(idle, msg, ["p1", "p2", "p3"])
    await receipt(idle, "p2", State.UNDELIVERED)
    mid = await idle.messaging.message(msg["account_id"], msg["id"])
    assert mid["state"] == "submitted"  # not final until every part is
    await receipt(idle, "p3", State.DELIVERED)
    await receipt(idle, "p1", State.DELIVERED)
    after = await idle.messaging.message(msg["account_id"], msg["id"])
    assert after["state"] == "undelivered"


async def test_unicode_is_counted_in_ucs2_parts_and_priced_by_network(idle: Platform) -> None:
    await idle.credits.set_price("Safaricom", "0.8")
    await idle.credits.set_price("Airtel", "1.5")
    idle.messaging.forget_prices()
    account = await make_account(idle)
    acc = await idle.accounts.get(account["account_id"])
    text = "Habari 😀 " * 10  # an emoji forces UCS-2; 100 UTF-16 units → 2 parts
    result = await idle.messaging.send(acc, SendRequest(recipients=["0708400000", "0733000000", "0770000000"], text=text))
    assert result.encoding == "ucs2" and result.parts == 2
    costs = {r.network: r.cost for r in result.recipients}
    assert costs == {"Safaricom": 16_000, "Airtel": 30_000, "Telkom": 20_000}  # 0.8, 1.5 and the default 1.0 per part


async def test_no_final_receipt_within_validity_expires(tmp_path: Path, database_url: str | None) -> None:
    p = Platform(make_settings(tmp_path, database_url, expire_every_s=0.5))  # the sweep looks every second
    await p.start("all")
    try:
        msg = await send_one(p, to="254700000005", validity_s=1)  # the simulator never reports this number

        async def expired() -> bool:
            m = await p.messaging.message(msg["account_id"], msg["id"])
            return m["state"] == "expired"

        await eventually(expired, timeout=20)
        m = await p.messaging.message(msg["account_id"], msg["id"])
        assert m["events"][-1]["detail"] == "no final receipt within the validity period"
    finally:
        await p.stop()


async def test_a_batch_of_outcomes_and_receipts_ends_each_message_as_one_by_one(idle: Platform) -> None:
    """The dispatcher and the receipt handler write a whole batch at once; several
    changes to one message in a batch must end as if applied one by one."""
    account = await make_account(idle, credits="10")
    acc = await idle.accounts.get(account["account_id"])
    to = ["0708400001", "0708400002", "0708400003", "0708400004"]
    sent = await idle.messaging.send(acc, SendRequest(recipients=to, text="hi", callback_url="http://example.com/dlr"))
    ok, refused, busy, long_ = (r.message_id for r in sent.recipients)
    dispatcher = Dispatcher(idle.store, Router({}))
    outcomes = [
        Outcome(ok, 1, "smsc-a", submitted=Submitted(["op-ok"])),
        Outcome(refused, 1, "smsc-a", error=SendError("bad number", code="1", transient=False, state=State.REJECTED)),
        Outcome(busy, 1, "smsc-a", error=SendError("throttled", transient=True)),
        Outcome(long_, 1, "smsc-a", submitted=Submitted(["op-l1", "op-l2"])),
    ]
    await idle.store.run(lambda tx: dispatcher._record(tx, outcomes))
    at = now_ms()
    receipts = [
        Receipt("smsc-a", "op-ok", State.SUBMITTED, at, raw="ENROUTE"),
        Receipt("smsc-a", "op-l1", State.DELIVERED, at + 1, raw="DELIVRD"),
        Receipt("smsc-a", "op-ok", State.DELIVERED, at + 2, raw="DELIVRD"),
        Receipt("smsc-a", "op-ok", State.UNDELIVERED, at + 3, raw="UNDELIV"),  # late: kept, changes nothing
        Receipt("smsc-a", "op-l2", State.UNDELIVERED, at + 4, raw="UNDELIV"),
    ]
    await idle.store.run(lambda tx: idle.reports._apply(tx, receipts, []))

    async def view(mid: int) -> dict:
        return await idle.messaging.message(acc.id, mid)  # type: ignore[return-value]

    m_ok, m_refused, m_busy, m_long = [await view(m) for m in (ok, refused, busy, long_)]  # type: ignore[arg-type]
    assert m_ok["state"] == "delivered" and m_ok["submitted_at"] and m_ok["done_at"]
    assert [e["state"] for e in m_ok["events"]][2:] == ["submitted", "submitted", "delivered", "undelivered"]
    assert m_ok["events"][-1]["detail"] == "part 1: receipt op-ok: UNDELIV"  # kept, not applied
    assert m_refused["state"] == "rejected" and m_refused["error_code"] == "1"
    assert m_busy["state"] == "queued" and m_busy["events"][-1]["state"] == "retry"
    assert m_long["state"] == "undelivered"  # the worst part wins, whatever the order
    # Each message's callbacks are queued in the order its states changed.
    rows = await idle.store.read(lambda tx: tx.fetch("SELECT message_id, payload FROM callbacks ORDER BY id"))
    told: dict[int, list[str]] = {}
    for r in rows:
        told.setdefault(r["message_id"], []).append(json.loads(r["payload"])["data"]["state"])
    assert told == {ok: ["submitted", "delivered"], refused: ["rejected"], long_: ["submitted", "undelivered"]}
    # Only what never reached the operator is refunded.
    refunds = await idle.store.read(lambda tx: tx.fetch("SELECT message_id FROM ledger WHERE kind = 'refund'"))
    assert [r["message_id"] for r in refunds] == [refused]
    retry_due = await idle.store.read(lambda tx: tx.fetchval("SELECT lease_owner FROM outbox WHERE message_id = ?", busy))
    assert retry_due is None


async def test_the_sweeper_applies_parked_receipts_whose_submit_another_worker_recorded(idle: Platform) -> None:
    """Two workers: one parked the receipts, the other recorded the submit without
    seeing them. The sweeper applies what now matches and keeps the rest."""
    account = await make_account(idle)
    acc = await idle.accounts.get(account["account_id"])
    sent = await idle.messaging.send(acc, SendRequest(recipients=["0708400001", "0708400002"], text="hi"))
    a, b = (r.message_id for r in sent.recipients)
    at = now_ms()
    await idle.store.run(lambda tx: idle.reports._apply(tx, [
        Receipt("smsc-a", "op-a", State.DELIVERED, at, raw="DELIVRD"),
        Receipt("smsc-a", "op-b", State.UNDELIVERED, at, raw="UNDELIV"),
        Receipt("smsc-a", "op-nobody", State.DELIVERED, at, raw="DELIVRD"),
    ], []))

    async def record_elsewhere(tx: Tx) -> None:  # the other worker's record, without the early-receipt pass
        await q.insert_parts(tx, [(a, 1, "op-a", "smsc-a", "submitted", at), (b, 1, "op-b", "smsc-a", "submitted", at)])
        await tx.execute("UPDATE messages SET state = 'submitted', submitted_at = ? WHERE id IN (?, ?)", at, a, b)

    await idle.store.run(record_elsewhere)
    await idle.store.run(Sweeper(idle.store).match_early_receipts)
    assert (await idle.messaging.message(acc.id, a))["state"] == "delivered"  # type: ignore[arg-type,index]
    assert (await idle.messaging.message(acc.id, b))["state"] == "undelivered"  # type: ignore[arg-type,index]
    left = await idle.store.read(lambda tx: tx.fetch("SELECT operator_id FROM early_receipts"))
    assert [r["operator_id"] for r in left] == ["op-nobody"]


async def test_a_receipt_held_for_its_submit_is_parked_when_the_worker_stops(idle: Platform) -> None:
    """A receipt whose submit this process sent but has not recorded waits in
    memory, unacknowledged; stopping must park it rather than drop it, and
    only then answer the channel."""
    reports = Reports(idle.store, hold_s=3600)
    reports.awaiting_record = lambda channel, op_id: (channel, op_id) == ("smsc-a", "op-later")
    stop = asyncio.Event()
    task = asyncio.create_task(reports.run(stop))
    answered = asyncio.create_task(reports.receipt(Receipt("smsc-a", "op-later", State.DELIVERED, now_ms(), raw="DELIVRD")))

    async def held() -> bool:
        return bool(reports._held)

    await eventually(held)
    assert not answered.done()  # not committed anywhere yet: the SMSC must not be told we have it
    assert await idle.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM early_receipts")) == 0
    stop.set()
    await task
    await asyncio.wait_for(answered, 5)
    parked = await idle.store.read(lambda tx: tx.fetch("SELECT operator_id, state FROM early_receipts"))
    assert [(r["operator_id"], r["state"]) for r in parked] == [("op-later", "delivered")]
    with pytest.raises(RuntimeError):  # stopped: a receipt now is refused, so it is not acknowledged
        await reports.receipt(Receipt("smsc-a", "op-after", State.DELIVERED, now_ms(), raw="DELIVRD"))


class SlowChannel(Channel):
    """An operator that takes a second to answer each submit."""

    name = "slow"

    async def _send(self, msg: Outbound) -> Submitted:
        await asyncio.sleep(1.0)
        return Submitted([f"slow-{msg.message_id}"])


async def test_a_stopping_worker_waits_for_sends_in_flight_without_burning_a_core(idle: Platform) -> None:
    msg = await send_one(idle)
    dispatcher = Dispatcher(idle.store, Router({"slow": SlowChannel()}), poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))

    async def in_flight() -> bool:
        return dispatcher._in_flight == 1

    await eventually(in_flight, timeout=10)
    cpu = time.process_time()
    stop.set()
    await asyncio.wait_for(task, 10)
    # the outcome was recorded before the worker stopped, and waiting for it was idle
    assert (await idle.messaging.message(msg["account_id"], msg["id"]))["state"] == "submitted"
    assert time.process_time() - cpu < 0.5


async def test_a_receipt_moves_only_the_newest_part_with_its_id(idle: Platform) -> None:
    """An SMSC that restarts reuses ids: the older part with the same id is
    never moved, not by the receipt nor by a duplicate of it."""
    old, new = await send_one(idle, to="0708400001"), await send_one(idle, to="0708400002")
    await submit(idle, old, ["7"])
    await submit(idle, new, ["7"])  # after the SMSC restarted
    await receipt(idle, "7", State.DELIVERED)
    await receipt(idle, "7", State.DELIVERED)  # the SMSC sends it again (our answer was lost)
    m_old = await idle.messaging.message(old["account_id"], old["id"])
    m_new = await idle.messaging.message(new["account_id"], new["id"])
    assert m_new["state"] == "delivered" and m_old["state"] == "submitted"
    assert [e["state"] for e in m_old["events"]] == ["accepted", "queued", "submitted"]
    assert [e["state"] for e in m_new["events"]] == ["accepted", "queued", "submitted", "delivered", "delivered"]


async def test_a_parked_receipt_is_never_given_to_a_part_sent_after_it_came(idle: Platform) -> None:
    msg = await send_one(idle)
    long_ago = now_ms() - 60_000
    # a receipt for something we never recorded, a minute ago
    orphan = Receipt("smsc-a", "42", State.DELIVERED, long_ago, raw="DELIVRD", received_at=long_ago)
    await idle.store.run(lambda tx: idle.reports._apply(tx, [orphan], []))
    await submit(idle, msg, ["42"])  # the SMSC restarted and gives the id to our new submit
    after = await idle.messaging.message(msg["account_id"], msg["id"])
    assert after["state"] == "submitted"
    await idle.store.run(Sweeper(idle.store).match_early_receipts)
    assert (await idle.messaging.message(msg["account_id"], msg["id"]))["state"] == "submitted"
    assert await idle.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM early_receipts")) == 1


async def test_a_receipt_long_after_its_namesakes_validity_matches_nothing(idle: Platform) -> None:
    msg = await send_one(idle, validity_s=60)
    await submit(idle, msg, ["99"])
    later = now_ms() + 2 * 3600 * 1000  # two hours after the validity ended
    stale = Receipt("smsc-a", "99", State.DELIVERED, later, raw="DELIVRD", received_at=later)
    assert await idle.store.run(lambda tx: apply_receipts(tx, [stale])) == [stale]
    assert (await idle.messaging.message(msg["account_id"], msg["id"]))["state"] == "submitted"


async def test_the_sweeper_leaves_a_parked_receipt_to_the_record_this_process_awaits(idle: Platform) -> None:
    """A receipt parked while its submit's record was still pending here must
    not be matched by the sweeper to an older part with the same id."""
    old = await send_one(idle)
    await submit(idle, old, ["5"])  # before the SMSC restarted its ids
    await idle.store.run(lambda tx: idle.reports._apply(tx, [Receipt("smsc-a", "5", State.DELIVERED, now_ms(), raw="DELIVRD")], []))
    assert (await idle.messaging.message(old["account_id"], old["id"]))["state"] == "delivered"  # nothing awaited: it is old's
    older = await send_one(idle, to="0708400009")
    await submit(idle, older, ["6"])
    idle.reports.awaiting_record = lambda channel, op_id: op_id == "6"  # a new send got "6" and is not recorded yet
    await idle.store.run(lambda tx: idle.reports._apply(tx, [Receipt("smsc-a", "6", State.DELIVERED, now_ms(), raw="DELIVRD")], []))
    sweeper = Sweeper(idle.store)
    sweeper.awaiting_record = idle.reports.awaiting_record  # as runtime wires it
    await idle.store.run(sweeper.match_early_receipts)
    assert (await idle.messaging.message(older["account_id"], older["id"]))["state"] == "submitted"
    assert await idle.store.read(lambda tx: tx.fetchval("SELECT count(*) FROM early_receipts")) == 1
