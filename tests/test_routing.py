"""Operator connectors and routes: managed over the admin API, the native API
and the CLI, effective in a running worker without a restart, with failover.

The operators here are Ujumbe's own SMSC simulator on real sockets (fast);
tests/test_smpp_e2e.py does the same against node-smpp, which we did not write.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import auth, eventually, make_account, make_settings, serving

from ujumbe.channels.base import SendError
from ujumbe.channels.simulator import Simulator
from ujumbe.channels.smpp.sim import SmscSimulator
from ujumbe.http.app import create_app
from ujumbe.runtime import Platform
from ujumbe.services.routing import PasswordBox, Router, Rule

ADMIN = "admin-token-for-tests-0123456789"
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def smsc() -> AsyncIterator[SmscSimulator]:
    s = SmscSimulator("127.0.0.1", 0, system_id="ujumbe", password="s3cret", receipt_delay_ms=20)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def smsc2() -> AsyncIterator[SmscSimulator]:
    s = SmscSimulator("127.0.0.1", 0, system_id="ujumbe", password="s3cret", receipt_delay_ms=20, seed=7)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def admin_api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    platform.settings.admin_token = ADMIN
    async with serving(create_app(platform, manage_platform=False)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client


def connector_body(name: str, port: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port, "system_id": "ujumbe", "password": "s3cret", **kw}


async def send(api: httpx.AsyncClient, account: dict[str, Any], to: str | list[str], text: str = "Habari") -> list[int]:
    # an SMPP submit needs a sender: the connector refuses an empty source_addr
    r = await api.post("/v1/messages", json={"to": to, "text": text, "sender": "Ujumbe"}, headers=auth(account))
    assert r.status_code in (200, 201, 202), r.text
    return [m["id"] for m in r.json()["messages"]]


async def message(platform: Platform, mid: int) -> dict[str, Any]:
    row = await platform.store.read(
        lambda tx: tx.fetchrow("SELECT state, connector FROM messages WHERE id = ?", mid)
    )
    assert row is not None
    return {"state": row[0], "connector": row[1]}


async def delivered_via(platform: Platform, mid: int) -> str | None:
    m = await message(platform, mid)
    return m["connector"] if m["state"] == "delivered" else None


# --- the rules, without I/O ---


class FakeConnector(Simulator):
    def __init__(self, name: str, up: bool = True) -> None:
        super().__init__(name=name)
        self.binds_up = 1 if up else 0


def router_with(rules: list[Rule], *connectors: FakeConnector) -> Router:
    router = Router({"simulator": Simulator()})
    router.connectors = {c.name: c for c in connectors}
    router.configured = bool(connectors)
    router.rules = sorted(rules, key=Rule.order)
    return router


def msg(recipient: str, network: str | None = None, account: str = "acct-a") -> dict[str, Any]:
    return {"recipient": recipient, "network": network, "account_id": account, "channel": "sms"}


def test_rules_order_account_then_longest_prefix_then_network_then_default() -> None:
    a, b, c, d, e = (FakeConnector(n) for n in "abcde")
    router = router_with(
        [
            Rule(1, None, "default", "", "e", 100),
            Rule(2, None, "prefix", "2547", "a", 100),
            Rule(3, None, "prefix", "25471", "b", 100),
            Rule(4, None, "network", "Airtel", "c", 100),
            Rule(5, "acct-x", "prefix", "254", "d", 100),
        ],
        a, b, c, d, e,
    )
    assert router.candidates(msg("254712000000", "Safaricom")) == ["b", "a", "e"]
    assert router.candidates(msg("254733000000", "airtel")) == ["a", "c", "e"]
    assert router.candidates(msg("255754000000", "Vodacom")) == ["e"]
    assert router.candidates(msg("254733000000", "Airtel", account="acct-x")) == ["d", "a", "c", "e"]
    assert router.route(msg("254712000000")).name == "b"


def test_failover_skips_connectors_without_a_bind_and_waits_when_none_is_up() -> None:
    a, b = FakeConnector("a", up=False), FakeConnector("b")
    router = router_with([Rule(1, None, "prefix", "2547", "a", 1), Rule(2, None, "prefix", "2547", "b", 2)], a, b)
    assert router.route(msg("254712000000")).name == "b"
    b.binds_up = 0
    with pytest.raises(SendError) as info:
        router.route(msg("254712000000"))
    assert info.value.transient and info.value.code == "no_connector_up"


def test_unmatched_traffic_uses_configured_connectors_never_the_simulator() -> None:
    router = router_with([Rule(1, None, "prefix", "2547", "a", 1)], FakeConnector("a", up=False), FakeConnector("z"))
    assert router.route(msg("255754000000")).name == "z"
    assert router_with([]).route(msg("255754000000")).name == "simulator"


def test_password_box_round_trip_and_wrong_secret() -> None:
    from cryptography.fernet import InvalidToken

    token = PasswordBox("one secret").seal("s3cret")
    assert "s3cret" not in token
    assert PasswordBox("one secret").open(token) == "s3cret"
    with pytest.raises(InvalidToken):
        PasswordBox("another secret").open(token)


# --- through the platform, on SQLite and PostgreSQL ---


async def test_admin_api_needs_the_admin_token(platform: Platform, admin_api: httpx.AsyncClient) -> None:
    assert (await admin_api.get("/admin/v1/connectors")).status_code == 401
    r = await admin_api.get("/admin/v1/connectors", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    account = await make_account(platform)
    assert (await admin_api.get("/admin/v1/connectors", headers=auth(account))).status_code == 401
    platform.settings.admin_token = ""
    r = await admin_api.get("/admin/v1/connectors", headers=ADMIN_AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_admin_api_has_its_own_openapi_document_matching_its_answers(
    platform: Platform, admin_api: httpx.AsyncClient, smsc: SmscSimulator
) -> None:
    import msgspec

    from ujumbe.http import admin

    assert (await admin_api.get("/admin/v1/openapi.json")).status_code == 401
    doc = (await admin_api.get("/admin/v1/openapi.json", headers=ADMIN_AUTH)).json()
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert {("GET", "/admin/v1/connectors"), ("POST", "/admin/v1/connectors"), ("PATCH", "/admin/v1/connectors/{name}"),
            ("DELETE", "/admin/v1/connectors/{name}"), ("POST", "/admin/v1/routes"),
            ("DELETE", "/admin/v1/routes/{id}")} <= ops
    assert doc["paths"]["/admin/v1/connectors"]["post"]["security"] == [{"bearer": []}]
    # a password is optional in the schema (an SMTP relay may need none); SMPP connectors are refused without one
    assert "password" in doc["components"]["schemas"]["ConnectorBody"]["properties"]
    no_password = {k: v for k, v in connector_body("op-nopw", smsc.port).items() if k != "password"}
    r = await admin_api.post("/admin/v1/connectors", json=no_password, headers=ADMIN_AUTH)
    assert r.status_code == 400 and "password" in r.json()["error"]["message"]
    assert "password" not in doc["components"]["schemas"]["ConnectorOut"]["properties"]
    tenants = (await admin_api.get("/openapi.json")).json()["paths"]
    assert not [p for p in tenants if p.startswith("/admin")] and "/v1/routes" in tenants

    # what the endpoints answer has the documented shape
    made = await admin_api.post("/admin/v1/connectors", json=connector_body("op-doc", smsc.port), headers=ADMIN_AUTH)
    assert made.status_code == 201
    assert msgspec.convert(made.json(), admin.ConnectorOut).password_set
    await eventually(lambda: _binds_up(admin_api, "op-doc"))
    listed = (await admin_api.get("/admin/v1/connectors", headers=ADMIN_AUTH)).json()
    listed = msgspec.convert(listed, admin.ConnectorList)
    assert [c.name for c in listed.data] == ["op-doc"] and listed.data[0].status is not None
    route = await admin_api.post("/admin/v1/routes", json={"kind": "prefix", "value": "2547", "connector": "op-doc"},
                                 headers=ADMIN_AUTH)
    assert msgspec.convert(route.json(), admin.RouteOut).value == "2547"
    routes = msgspec.convert((await admin_api.get("/admin/v1/routes", headers=ADMIN_AUTH)).json(), admin.RouteList)
    assert [r.connector for r in routes.data] == ["op-doc"]


async def test_guessing_the_admin_token_is_throttled_but_the_right_token_still_gets_in(
    platform: Platform, admin_api: httpx.AsyncClient
) -> None:
    platform.accounts.throttle.hold_s = 0.2
    assert (await admin_api.get("/admin/v1/connectors", headers=ADMIN_AUTH)).status_code == 200
    for n in range(5):
        wrong = await admin_api.get("/admin/v1/connectors", headers={"authorization": f"Bearer guess-{n}"})
        assert wrong.status_code == 401
    # from the sixth on, wrong tokens from this address are refused (after a pause)...
    started = time.monotonic()
    r = await admin_api.get("/admin/v1/connectors", headers={"authorization": "Bearer guess-6"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 0 < int(r.headers["retry-after"]) <= 300 and time.monotonic() - started >= 0.2
    # ...but they do not lock the operator out: the right token is let in
    assert (await admin_api.get("/admin/v1/connectors", headers=ADMIN_AUTH)).status_code == 200


async def test_admin_api_manages_connectors_and_routes(
    platform: Platform, admin_api: httpx.AsyncClient, smsc: SmscSimulator
) -> None:
    r = await admin_api.post("/admin/v1/connectors", json=connector_body("op-a", smsc.port, tps=50), headers=ADMIN_AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "op-a" and body["tps"] == 50 and body["password_set"] is True
    assert "password" not in body and "password_enc" not in body and "s3cret" not in r.text
    stored = await platform.store.read(lambda tx: tx.fetchval("SELECT password_enc FROM connectors WHERE name = 'op-a'"))
    assert "s3cret" not in stored and platform.routing.box.open(stored) == "s3cret"

    r = await admin_api.post("/admin/v1/connectors", json=connector_body("op-a", smsc.port), headers=ADMIN_AUTH)
    assert r.status_code == 409 and r.json()["error"]["code"] == "connector_exists"
    for bad, word in (
        ({"port": 70000}, "port"), ({"bind": "sideways"}, "bind_mode"), ({"password": "far too long"}, "password"),
        ({"name": "simulator"}, "simulator"), ({"long_messages": "smoke"}, "long_messages"),
    ):
        r = await admin_api.post("/admin/v1/connectors", json={**connector_body("op-b", smsc.port), **bad}, headers=ADMIN_AUTH)
        assert r.status_code == 400 and word in r.json()["error"]["message"], (bad, r.text)
    r = await admin_api.post("/admin/v1/connectors", content=b"{not json", headers=ADMIN_AUTH)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"

    await eventually(lambda: _binds_up(admin_api, "op-a"))
    r = await admin_api.patch("/admin/v1/connectors/op-a", json={"tps": None, "window": 100}, headers=ADMIN_AUTH)
    assert r.status_code == 200 and r.json()["tps"] is None and r.json()["window"] == 100
    assert (await admin_api.patch("/admin/v1/connectors/nope", json={"tps": 1}, headers=ADMIN_AUTH)).status_code == 404

    r = await admin_api.post("/admin/v1/routes", json={"kind": "prefix", "value": "+2547", "connector": "op-a"},
                             headers=ADMIN_AUTH)
    assert r.status_code == 201 and r.json()["value"] == "2547"
    route_id = r.json()["id"]
    for bad in ({"kind": "prefix", "value": "07x", "connector": "op-a"}, {"kind": "nearest", "connector": "op-a"},
                {"kind": "default", "value": "x", "connector": "op-a"}):
        r = await admin_api.post("/admin/v1/routes", json=bad, headers=ADMIN_AUTH)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_route", r.text
    r = await admin_api.post("/admin/v1/routes", json={"kind": "default", "connector": "ghost"}, headers=ADMIN_AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "connector_not_found"
    listed = (await admin_api.get("/admin/v1/routes", headers=ADMIN_AUTH)).json()["data"]
    assert [x["id"] for x in listed] == [route_id]

    r = await admin_api.delete("/admin/v1/connectors/op-a", headers=ADMIN_AUTH)
    assert r.status_code == 409 and r.json()["error"]["code"] == "connector_in_use"
    assert (await admin_api.delete(f"/admin/v1/routes/{route_id}", headers=ADMIN_AUTH)).status_code == 204
    assert (await admin_api.delete("/admin/v1/connectors/op-a", headers=ADMIN_AUTH)).status_code == 204
    assert (await admin_api.get("/admin/v1/connectors/op-a", headers=ADMIN_AUTH)).status_code == 404
    await eventually(lambda: _not_running(platform, "op-a"))


async def _binds_up(api: httpx.AsyncClient, name: str) -> bool:
    status = (await api.get(f"/admin/v1/connectors/{name}", headers=ADMIN_AUTH)).json()["status"]
    return bool(status and status["binds_up"])


async def _not_running(platform: Platform, name: str) -> bool:
    return platform.router.status(name) is None


async def test_connector_and_routes_take_effect_without_restart(
    platform: Platform, admin_api: httpx.AsyncClient, smsc: SmscSimulator
) -> None:
    account = await make_account(platform)
    before = await send(admin_api, account, "0712000011")  # no connector yet: the simulator
    assert await eventually(lambda: delivered_via(platform, before[0])) == "simulator"

    await admin_api.post("/admin/v1/connectors", json=connector_body("op-a", smsc.port), headers=ADMIN_AUTH)
    await admin_api.post("/admin/v1/routes", json={"kind": "prefix", "value": "2547", "connector": "op-a"},
                         headers=ADMIN_AUTH)
    await admin_api.post("/admin/v1/routes", json={"kind": "default", "connector": "simulator"}, headers=ADMIN_AUTH)
    await eventually(lambda: _binds_up(admin_api, "op-a"))

    kenya, tanzania = await send(admin_api, account, ["0712000011", "+255754000011"], "Habari " * 30)
    assert await eventually(lambda: delivered_via(platform, kenya)) == "op-a"
    assert await eventually(lambda: delivered_via(platform, tanzania)) == "simulator"
    assert [p.get("destination_addr") for p in smsc.submitted] == ["254712000011"] * 2  # two parts, both to op-a
    parts = await platform.store.read(
        lambda tx: tx.fetch("SELECT connector FROM message_parts WHERE message_id = ?", kenya)
    )
    assert [p[0] for p in parts] == ["op-a", "op-a"]  # receipts matched by the connector's name

    # Without the default route there is no failover: disabled, op-a unbinds and
    # its traffic waits for a bind instead of failing, and goes when it is back.
    default_id = [r["id"] for r in (await admin_api.get("/admin/v1/routes", headers=ADMIN_AUTH)).json()["data"]
                  if r["kind"] == "default"][0]
    assert (await admin_api.delete(f"/admin/v1/routes/{default_id}", headers=ADMIN_AUTH)).status_code == 204
    r = await admin_api.patch("/admin/v1/connectors/op-a", json={"enabled": False}, headers=ADMIN_AUTH)
    assert r.status_code == 200
    await eventually(lambda: _not_running(platform, "op-a"))
    waiting = (await send(admin_api, account, "0712000021"))[0]
    await eventually(lambda: _has_event(platform, waiting, "waiting"))
    assert (await message(platform, waiting))["state"] == "queued"
    await admin_api.patch("/admin/v1/connectors/op-a", json={"enabled": True}, headers=ADMIN_AUTH)
    assert await eventually(lambda: delivered_via(platform, waiting), timeout=20) == "op-a"


async def test_the_operator_never_has_more_than_the_window_outstanding(
    platform: Platform, admin_api: httpx.AsyncClient
) -> None:
    """The dispatcher claims several windows ahead; the operator must still
    see at most a window's worth of unanswered submits, and get them all."""
    slow = SmscSimulator("127.0.0.1", 0, system_id="ujumbe", password="s3cret", latency_ms=20, receipt_delay_ms=20)
    await slow.start()
    try:
        account = await make_account(platform, credits="1000")
        await admin_api.post("/admin/v1/connectors", json=connector_body("op-w", slow.port, window=32),
                             headers=ADMIN_AUTH)
        await admin_api.post("/admin/v1/routes", json={"kind": "default", "connector": "op-w"}, headers=ADMIN_AUTH)
        await eventually(lambda: _binds_up(admin_api, "op-w"))
        ids = await send(admin_api, account, [f"0712{i:04d}19" for i in range(300)])

        async def all_delivered() -> bool:
            return all([await delivered_via(platform, mid) == "op-w" for mid in ids])

        await eventually(all_delivered, timeout=30)
        assert len(slow.submitted) == 300
        assert 16 <= slow.max_in_flight <= 32  # the window was used, and never exceeded
    finally:
        await slow.stop()


async def test_a_window_of_four_never_has_a_fifth_submit_outstanding(
    platform: Platform, admin_api: httpx.AsyncClient
) -> None:
    """A contracted window below the old floor of 32 is honoured exactly, though
    the dispatcher claims several windows ahead, and shown as configured."""
    slow = SmscSimulator("127.0.0.1", 0, system_id="ujumbe", password="s3cret", latency_ms=40, receipt_delay_ms=20)
    await slow.start()
    try:
        account = await make_account(platform, credits="1000")
        r = await admin_api.post("/admin/v1/connectors", json=connector_body("op-4", slow.port, window=4),
                                 headers=ADMIN_AUTH)
        assert r.status_code == 201 and r.json()["window"] == 4
        await admin_api.post("/admin/v1/routes", json={"kind": "default", "connector": "op-4"}, headers=ADMIN_AUTH)
        await eventually(lambda: _binds_up(admin_api, "op-4"))
        assert platform.router.connectors["op-4"].max_in_flight == 4
        ids = await send(admin_api, account, [f"0712{i:04d}29" for i in range(60)])
        ids += await send(admin_api, account, [f"0713{i:04d}29" for i in range(5)], text="y" * 400)  # 3 parts each

        async def all_delivered() -> bool:
            return all([await delivered_via(platform, mid) == "op-4" for mid in ids])

        await eventually(all_delivered, timeout=30)
        assert len(slow.submitted) == 60 + 5 * 3
        assert slow.max_in_flight == 4  # four unanswered at the operator, never a fifth
        listed = (await admin_api.get("/admin/v1/connectors", headers=ADMIN_AUTH)).json()["data"]
        assert [c["window"] for c in listed if c["name"] == "op-4"] == [4]
    finally:
        await slow.stop()


async def _has_retry(platform: Platform, mid: int) -> bool:
    return await _has_event(platform, mid, "retry")


async def _has_event(platform: Platform, mid: int, state: str) -> bool:
    return bool(await platform.store.read(
        lambda tx: tx.fetchval("SELECT count(*) FROM message_events WHERE message_id = ? AND state = ?", mid, state)
    ))


async def test_failover_to_the_next_route_when_an_operator_is_down(
    platform: Platform, admin_api: httpx.AsyncClient, smsc: SmscSimulator, smsc2: SmscSimulator
) -> None:
    account = await make_account(platform)
    for name, sim in (("op-a", smsc), ("op-b", smsc2)):
        await admin_api.post("/admin/v1/connectors", json=connector_body(name, sim.port), headers=ADMIN_AUTH)
        await eventually(lambda name=name: _binds_up(admin_api, name))
    for prio, name in ((1, "op-a"), (2, "op-b")):
        r = await admin_api.post("/admin/v1/routes", json={"kind": "network", "value": "Safaricom", "connector": name,
                                                           "priority": prio}, headers=ADMIN_AUTH)
        assert r.status_code == 201
    first = (await send(admin_api, account, "0712000031"))[0]
    assert await eventually(lambda: delivered_via(platform, first)) == "op-a"
    await smsc.stop()  # the operator goes away
    await eventually(lambda: _binds_down(platform, "op-a"))
    second = (await send(admin_api, account, "0712000041"))[0]
    assert await eventually(lambda: delivered_via(platform, second)) == "op-b"


async def _binds_down(platform: Platform, name: str) -> bool:
    status = platform.router.status(name)
    return status is not None and status["binds_up"] == 0


async def test_account_pins_its_own_traffic(platform: Platform, admin_api: httpx.AsyncClient, smsc: SmscSimulator) -> None:
    pinned, other = await make_account(platform), await make_account(platform)
    await admin_api.post("/admin/v1/connectors", json=connector_body("op-a", smsc.port), headers=ADMIN_AUTH)
    await admin_api.post("/admin/v1/routes", json={"kind": "default", "connector": "simulator"}, headers=ADMIN_AUTH)
    r = await admin_api.post("/v1/routes", json={"kind": "prefix", "value": "2547", "connector": "op-a"},
                             headers=auth(pinned))
    assert r.status_code == 201 and r.json()["account_id"] == pinned["account_id"]
    route_id = r.json()["id"]
    r = await admin_api.post("/v1/routes", json={"kind": "prefix", "value": "2547", "connector": "op-a",
                                                 "account_id": other["account_id"]}, headers=auth(pinned))
    assert r.status_code == 400  # an account cannot set routes for another
    assert (await admin_api.get("/v1/routes", headers=auth(other))).json()["data"] == []
    assert (await admin_api.delete(f"/v1/routes/{route_id}", headers=auth(other))).status_code == 404
    assert (await admin_api.get("/v1/routes")).status_code == 401
    await eventually(lambda: _binds_up(admin_api, "op-a"))

    mine = (await send(admin_api, pinned, "0712000051"))[0]
    theirs = (await send(admin_api, other, "0712000061"))[0]
    assert await eventually(lambda: delivered_via(platform, mine)) == "op-a"
    assert await eventually(lambda: delivered_via(platform, theirs)) == "simulator"
    assert (await admin_api.delete(f"/v1/routes/{route_id}", headers=auth(pinned))).status_code == 204


async def test_cli_changes_reach_a_running_worker(
    tmp_path: Path, database_url: str | None, smsc: SmscSimulator
) -> None:
    settings = make_settings(tmp_path, database_url, routing_poll_s=0.2)
    platform = Platform(settings)
    await platform.start("all")
    env = {**os.environ, "UJUMBE_DATA_DIR": str(settings.data_dir), "UJUMBE_SECRET_KEY": settings.load_secret(),
           "UJUMBE_CONNECTOR_PASSWORD": "s3cret"}
    env.pop("UJUMBE_DATABASE_URL", None)
    if database_url:
        env["UJUMBE_DATABASE_URL"] = database_url

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ujumbe", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    try:
        code, out, err = await cli("connectors", "add", "op-cli", "--host", "127.0.0.1", "--port", str(smsc.port),
                                   "--system-id", "ujumbe", "--long-messages", "sar")
        assert code == 0, err
        assert "s3cret" not in out and '"password_set": true' in out
        code, out, err = await cli("routes", "add", "--kind", "prefix", "--value", "2547", "--connector", "op-cli")
        assert code == 0, err
        code, out, _ = await cli("connectors", "list")
        assert '"op-cli"' in out and "s3cret" not in out
        # named as its options and the admin API name them, times in ISO 8601
        listed = next(c for c in json.loads(out) if c["name"] == "op-cli")
        assert (listed["window"], listed["bind"], listed["created_at"][-1]) == (64, "transceiver", "Z")
        await eventually(lambda: _binds_up_direct(platform, "op-cli"))

        account = await make_account(platform)
        result = await platform.messaging.send(await platform.accounts.get(account["account_id"]), _request("0712000071"))
        mid = result.recipients[0].message_id
        assert await eventually(lambda: delivered_via(platform, mid)) == "op-cli"

        code, _, err = await cli("connectors", "remove", "op-cli")
        assert code == 1 and "connector_in_use" in err
        code, out, _ = await cli("routes", "list")
        route_id = out.split('"id": ')[1].split(",")[0]
        assert (await cli("routes", "remove", route_id))[0] == 0
        assert (await cli("connectors", "remove", "op-cli"))[0] == 0
        await eventually(lambda: _not_running(platform, "op-cli"))
    finally:
        await platform.stop()


async def _binds_up_direct(platform: Platform, name: str) -> bool:
    status = platform.router.status(name)
    return bool(status and status["binds_up"])


def _request(to: str) -> Any:
    from ujumbe.services.messaging import SendRequest

    return SendRequest(recipients=[to], text="Habari", sender="Ujumbe", dialect="native")


async def test_a_changed_connector_restarts_and_a_removed_one_lets_its_sends_finish(
    platform: Platform, admin_api: httpx.AsyncClient, smsc: SmscSimulator, smsc2: SmscSimulator
) -> None:
    account = await make_account(platform)
    smsc.latency = 0.5  # slow answers, so a send is still in flight when the connector goes
    await admin_api.post("/admin/v1/connectors", json=connector_body("op-a", smsc.port), headers=ADMIN_AUTH)
    await admin_api.post("/admin/v1/routes", json={"kind": "prefix", "value": "254", "connector": "op-a"},
                         headers=ADMIN_AUTH)
    await eventually(lambda: _binds_up(admin_api, "op-a"))
    slow = (await send(admin_api, account, "0712000081"))[0]
    await eventually(lambda: _in_flight(smsc), interval=0.01)
    r = await admin_api.patch("/admin/v1/connectors/op-a", json={"window": 128}, headers=ADMIN_AUTH)
    assert r.status_code == 200
    # The old bind finished its send before unbinding: submitted once, never
    # retried; the SMSC hands its receipt to the new bind.
    assert await eventually(lambda: delivered_via(platform, slow)) == "op-a"
    assert not await _has_retry(platform, slow)
    assert len(smsc.submitted) == 1
    assert platform.router.connectors["op-a"].max_in_flight == 128  # restarted with the new window

    r = await admin_api.patch("/admin/v1/connectors/op-a", json={"port": smsc2.port}, headers=ADMIN_AUTH)
    assert r.status_code == 200
    await eventually(lambda: _bound_to(platform, "op-a", smsc2.port))
    moved = (await send(admin_api, account, "0712000091"))[0]
    assert await eventually(lambda: delivered_via(platform, moved)) == "op-a"
    assert [p.get("destination_addr") for p in smsc2.submitted] == ["254712000091"]


async def _bound_to(platform: Platform, name: str, port: int) -> bool:
    channel = platform.router.connectors.get(name)
    return channel is not None and getattr(channel, "port", None) == port and bool(getattr(channel, "binds_up", 0))


async def _in_flight(sim: SmscSimulator) -> bool:
    return sim.in_flight > 0
