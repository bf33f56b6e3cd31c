"""A message's callbacks reach the client in life-cycle order, also after
the client's receiver was down while its messages moved on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import Receiver, auth, client_of, eventually, make_account, running, serving
from ujumbe.runtime import Platform

ORDER = ["submitted", "delivered"]


@pytest.fixture
async def outage_platform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    # retries from 10 ms doubling: several tries each during a short outage
    async with running(tmp_path, database_url, callback_delay_scale=0.001) as p:
        yield p


async def test_callbacks_held_back_by_an_outage_arrive_in_life_cycle_order(
    outage_platform: Platform, receiver: Receiver,
) -> None:
    platform = outage_platform
    receiver.status = 503  # down: every callback fails and is retried
    account = await make_account(platform, credits="1000")
    count = 40
    async with client_of(platform) as api:
        await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": receiver.url + "/dlr"})
        r = await api.post("/v1/messages", headers=auth(account), json={
            "to": [f"07084{n:03d}99" for n in range(count)], "text": "hello",  # ...99: the simulator delivers
        })
        assert r.status_code == 202, r.text
        ids = {m["id"] for m in r.json()["messages"]}
        assert len(ids) == count

        async def all_delivered() -> bool:
            data = (await api.get("/v1/messages", headers=auth(account), params={"limit": 100})).json()["data"]
            return len(data) == count and all(m["state"] == "delivered" for m in data)

        await eventually(all_delivered, timeout=30)
        # down a little longer, so each message's two callbacks have both been tried and failed
        await receiver.wait_for(len(receiver.requests) + count)
        up_from = len(receiver.requests)
        receiver.status = 200  # every request from here on is acknowledged

        async def all_acknowledged() -> bool:
            return len(receiver.requests) - up_from >= 2 * count

        await eventually(all_acknowledged, timeout=60, interval=0.1)

    states: dict[int, list[str]] = {}
    for call in receiver.requests[up_from:]:
        data = call.json()["data"]
        states.setdefault(data["id"], []).append(data["state"])
    out_of_order = {mid: s for mid, s in states.items() if s != ORDER}
    assert set(states) == ids
    assert not out_of_order, f"{len(out_of_order)} of {count} messages called back out of order: {out_of_order}"


async def test_a_later_callback_waits_for_an_earlier_one_given_up(tmp_path: Path, database_url: str | None) -> None:
    # the first callback of each message is never acknowledged and given up
    # after its (shrunk) schedule; the later one goes then, not before
    async with running(tmp_path, database_url, callback_delay_scale=0.00001) as platform:
        seen: list[str] = []

        async def endpoint(request: Request) -> Response:
            state = (await request.json())["data"]["state"]
            seen.append(state)
            return Response("no" if state == "submitted" else "ok", status_code=500 if state == "submitted" else 200)

        async with client_of(platform) as api, serving(Starlette(routes=[Route("/cb", endpoint, methods=["POST"])])) as base:
            account = await make_account(platform)
            r = await api.post("/v1/messages", headers=auth(account), json={
                "to": "0708400000", "text": "hi", "callback_url": base + "/cb",
            })
            assert r.status_code == 202, r.text

            async def finished() -> list:
                data = (await api.get("/v1/callbacks", headers=auth(account))).json()["data"]
                return data if {c["status"] for c in data} == {"failed", "delivered"} else []

            calls = await eventually(finished, timeout=30, interval=0.1)
        failed = next(c for c in calls if c["status"] == "failed")
        assert failed["payload"]["data"]["state"] == "submitted" and failed["attempts"] == 31
        # every try of 'submitted' came before the one of 'delivered'
        assert seen == ["submitted"] * 31 + ["delivered"]
