"""Each attempt at a callback is kept on its own (migration 0022): what the
client's pages and GET /v1/messages/{id}/exchanges show, purged with its
message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Receiver, auth, client_of, eventually, make_account, running
from ujumbe.runtime import Platform
from ujumbe.workers.retention import DAY_MS, Retention


@pytest.fixture
async def quick(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    # retries a few milliseconds apart rather than 10 s, 20 s, ...
    async with running(tmp_path, database_url, callback_delay_scale=0.00001) as p:
        yield p


async def test_a_callback_that_failed_twice_shows_three_attempts_with_their_answers(
    quick: Platform, receiver: Receiver,
) -> None:
    p = quick
    acc = await make_account(p)
    receiver.fail_first = 2  # two answers 500 "FAILED", then 200 "OK"
    url = receiver.url.replace("http://", "http://hook:s3cr3t-pw@") + "/dlr?token=t0psecret"
    async with client_of(p) as api:
        r = await api.post("/v1/messages", headers=auth(acc), json={"to": "0708400000", "text": "hi", "callback_url": url})
        mid = r.json()["messages"][0]["id"]

        async def settled() -> dict | None:  # type: ignore[type-arg]
            got = (await api.get(f"/v1/messages/{mid}/exchanges", headers=auth(acc))).json()
            cbs = got["callbacks"]
            ok = got["state"] == "delivered" and cbs and all(c["status"] == "delivered" for c in cbs)
            return got if ok and sum(len(c["attempt_log"]) for c in cbs) >= 3 else None

        got = await eventually(settled, timeout=30)
        tries = [a for c in got["callbacks"] for a in c["attempt_log"]]
        assert [a["http_status"] for a in tries[:3]] == [500, 500, 200]
        assert tries[0]["response"] == "FAILED" and tries[2]["response"] == "OK"
        assert all(a["latency_ms"] >= 0 and a["at"] and a["error"] is None for a in tries)
        assert all(a["url"].startswith("http://hook:***@127.0.0.1:") and "token=***" in a["url"] for a in tries)
        assert "s3cr3t" not in str(got) and "t0psecret" not in str(got)
        assert sum(c["attempts"] for c in got["callbacks"]) == len(tries)
        other = await make_account(p)
        assert (await api.get(f"/v1/messages/{mid}/exchanges", headers=auth(other))).status_code == 404

    detail = await p.dashboard.message_detail(acc["account_id"], int(mid), r.json()["request_id"])
    assert [a["http_status"] for c in detail["callbacks"] for a in c["tries"]][:3] == [500, 500, 200]


async def test_an_unreachable_url_keeps_the_error_and_the_attempts_go_with_the_message(quick: Platform) -> None:
    p = quick
    acc = await make_account(p)
    await p.accounts.set_callbacks(acc["account_id"], {"dlr_url": "http://127.0.0.1:9/refused"})
    async with client_of(p) as api:
        r = await api.post("/v1/messages", headers=auth(acc), json={"to": "0708400000", "text": "hi"})
        mid = int(r.json()["messages"][0]["id"])

    async def given_up() -> bool:
        rows = await p.callback_log.list(acc["account_id"], None, 10, None)
        return bool(rows) and all(c["status"] == "failed" for c in rows)

    await eventually(given_up, timeout=60)

    async def count(table: str, column: str = "message_id") -> int:
        return await p.store.read(lambda tx: tx.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = ?", mid))

    found = await p.messaging.exchanges(acc["account_id"], mid)
    assert found is not None
    tries = [a for v in found["attempts"].values() for a in v]
    assert tries and all(a["http_status"] is None and a["error"] for a in tries)
    assert "refused" in tries[0]["error"].lower() or "connect" in tries[0]["error"].lower(), tries[0]
    assert await count("callback_attempts") == len(tries)
    # old and final: the message goes, and its callbacks' attempts with it
    await p.store.run(lambda tx: tx.execute("UPDATE messages SET created_at = created_at - ? WHERE id = ?",
                                            100 * DAY_MS, mid))
    purged = await Retention(p.store, days=90).purge()
    assert purged["messages"] == 1
    assert await count("messages", "id") == 0 and await count("callback_attempts") == 0
