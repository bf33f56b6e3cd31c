"""Receipts against an SMSC that restarts its ids and keeps its own clock.

Over real SMPP to the built-in SMSC simulator, on SQLite and PostgreSQL: a
receipt moves exactly one part (the newest with its id), never an older
namesake an SMSC restart left behind; and an SMSC whose clock is behind ours
does not put ``delivered`` before ``submitted`` in a message's events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import auth, client_of, eventually, make_account, running
from ujumbe.channels.smpp.sim import SmscSimulator
from ujumbe.runtime import Platform

ADMIN = "matching-admin-token-0123456789abcdef"


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    # Receipts right after each submit_sm_resp: most come before the submit
    # is recorded, the case where an older namesake is easiest to hit.
    s = SmscSimulator(port=0, receipt_delay_ms=0, first_id=1, id_style="decimal", clock_offset_ms=-600_000)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def platform_sim(tmp_path: Path, database_url: str | None, sim: SmscSimulator) -> AsyncIterator[Platform]:
    async with running(tmp_path, database_url, simulator=False, admin_token=ADMIN) as p:
        async with client_of(p) as api:
            r = await api.post(
                "/admin/v1/connectors", headers={"authorization": f"Bearer {ADMIN}"},
                json={"name": "restarting", "host": "127.0.0.1", "port": sim.port, "system_id": "u", "password": "p"},
            )
            assert r.status_code == 201, r.text

        async def bound() -> bool:
            status = p.router.status("restarting")
            return status is not None and bool(status["binds_up"])

        await eventually(bound)
        yield p


async def send(api: httpx.AsyncClient, account: dict[str, Any], to: list[str]) -> list[int]:
    r = await api.post("/v1/messages", headers=auth(account), json={"to": to, "text": "hi", "sender": "Ujumbe"})
    assert r.status_code == 202, r.text
    return [m["id"] for m in r.json()["messages"]]


async def states(p: Platform, ids: list[int]) -> dict[int, str]:
    marks = ",".join("?" * len(ids))
    rows = await p.store.read(lambda tx: tx.fetch(f"SELECT id, state FROM messages WHERE id IN ({marks})", *ids))
    return {r[0]: r[1] for r in rows}


async def operator_ids(p: Platform, ids: list[int]) -> set[str]:
    marks = ",".join("?" * len(ids))
    rows = await p.store.read(lambda tx: tx.fetch(f"SELECT operator_id FROM message_parts WHERE message_id IN ({marks})", *ids))
    return {r[0] for r in rows}


async def test_after_an_smsc_restarts_its_ids_only_the_new_messages_move(
    platform_sim: Platform, sim: SmscSimulator
) -> None:
    p = platform_sim
    account = await make_account(p, credits="1000")
    async with client_of(p) as api:
        # The simulator never reports numbers ending 0006: these stay submitted.
        old = await send(api, account, [f"0708{i:02d}0006" for i in range(30)])

        async def all_submitted() -> bool:
            return set((await states(p, old)).values()) == {"submitted"}

        await eventually(all_submitted, timeout=30)
        sim.restart_ids()  # the SMSC restarts and counts from 1 again
        new = await send(api, account, [f"0711{i:02d}0100" for i in range(30)])

        async def new_delivered() -> bool:
            return set((await states(p, new)).values()) == {"delivered"}

        await eventually(new_delivered, timeout=30)
        assert await operator_ids(p, old) == await operator_ids(p, new)  # every new id is an old one's too
        # give any stray receipt time to land, then: the old ones never moved
        await eventually(lambda: _quiet(p), timeout=10)
        assert set((await states(p, old)).values()) == {"submitted"}
        r = await api.get(f"/v1/messages/{old[0]}", headers=auth(account))
        assert [e["state"] for e in r.json()["events"]] == ["accepted", "queued", "submitted"]


async def _quiet(p: Platform) -> bool:
    return not p.reports._receipts and not p.reports._held


async def test_a_done_date_before_the_submit_keeps_the_life_cycle_order(
    platform_sim: Platform, sim: SmscSimulator
) -> None:
    """The simulator's clock is ten minutes behind ours: its receipts say the
    message was delivered before we submitted it."""
    p = platform_sim
    account = await make_account(p)
    async with client_of(p) as api:
        [mid] = await send(api, account, ["0722000100"])

        async def delivered() -> bool:
            return (await states(p, [mid]))[mid] == "delivered"

        await eventually(delivered, timeout=30)
        m = (await api.get(f"/v1/messages/{mid}", headers=auth(account))).json()
    events = m["events"]
    assert [e["state"] for e in events] == ["accepted", "queued", "submitted", "delivered"]
    times = [e["at"] for e in events]
    assert times == sorted(times)  # recorded times, in the order they happened
    assert m["done_at"] >= m["submitted_at"]
    # the SMSC's own time is still there, as data
    assert "operator's time" in events[-1]["detail"] and "done date:" in events[-1]["detail"]


async def test_a_receipt_for_a_part_that_comes_while_its_next_part_is_submitted_waits_for_its_message(
    platform_sim: Platform, sim: SmscSimulator
) -> None:
    """Part 1's receipt comes while part 2 is still out: it must not go to an
    older message with part 1's id, but wait for its own to be recorded."""
    p = platform_sim
    account = await make_account(p, credits="100")
    async with client_of(p) as api:
        old = await send(api, account, ["0708010006", "0708020006"])  # ids 1 and 2, never reported

        async def old_submitted() -> bool:
            return set((await states(p, old)).values()) == {"submitted"}

        await eventually(old_submitted, timeout=30)
        sim.restart_ids()
        sim.latency = 0.3  # each submit_sm_resp takes 300 ms; each receipt follows its resp at once
        r = await api.post("/v1/messages", headers=auth(account),
                           json={"to": ["0711000100"], "text": "x" * 200, "sender": "Ujumbe"})  # two parts: ids 1, 2
        assert r.status_code == 202, r.text
        new = [m["id"] for m in r.json()["messages"]]

        async def new_delivered() -> bool:
            return (await states(p, new))[new[0]] == "delivered"

        await eventually(new_delivered, timeout=30)
        assert await operator_ids(p, new) == await operator_ids(p, old)
        assert set((await states(p, old)).values()) == {"submitted"}
