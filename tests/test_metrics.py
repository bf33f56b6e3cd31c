"""GET /metrics from a multi-process server: the figures move under load."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Receiver, auth, client_of, eventually, free_port, make_account, running
from tests.test_processes import UJUMBE, cli, env_for, start_server, stop
from ujumbe.runtime import Platform


def value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def test_a_two_process_server_shows_every_figure_moving(tmp_path: Path, receiver: Receiver) -> None:
    env = env_for(tmp_path / "data", None)
    env["UJUMBE_ADMIN_TOKEN"] = "metrics-admin-token"
    account = cli(env, "accounts", "create", "--name", "M", "--email", "m@example.com",
                  "--password", "pass-word-1", "--credits", "1000")
    cli(env, "callbacks", "set", account["account_id"], "--dlr-url", receiver.url + "/dlr")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    admin = {"authorization": "Bearer metrics-admin-token"}
    port, metrics_port = free_port(), free_port()
    # the metrics address too: Prometheus on a private interface, no token
    proc = await start_server(env, port, "all", "--processes", "2", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
            before = (await client.get("/metrics", headers=admin)).text
            assert value(before, "ujumbe_messages_accepted_total") == 0
            for i in range(10):
                r = await client.post("/v1/messages", headers=headers, json={"to": f"07085{i:03d}99", "text": "hi"})
                assert r.status_code == 202, r.text
            await receiver.wait_for(10, timeout=30)

            async def moved() -> str | None:
                text = (await client.get("/metrics", headers=admin)).text
                # every message final and every callback sent (each message has two: submitted, delivered)
                ok = (value(text, "ujumbe_messages_final_total", state="delivered", connector="simulator") == 10
                      and value(text, "ujumbe_callbacks_total", outcome="sent") >= 10
                      and "ujumbe_queue_depth 0" in text and "ujumbe_callbacks_pending 0" in text)
                return text if ok else None

            text = await eventually(moved, timeout=30, interval=0.2)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10) as private:
                r = await private.get("/metrics")  # no token asked
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
                open_text = r.text
                # only the checks there: never the API, whatever the credentials
                for path in ("/v1/messages", "/admin/v1/connectors", "/dashboard"):
                    assert (await private.get(path, headers=headers)).status_code == 404
                assert (await private.get("/readyz")).json() == {"status": "ready", "role": "api"}
    finally:
        stop(proc)
    # the same figures, every process's, whichever address answers
    for name, labels in (("ujumbe_messages_final_total", {"state": "delivered"}),
                         ("ujumbe_messages_submitted_total", {}), ("ujumbe_messages_accepted_total", {})):
        assert value(open_text, name, **labels) == value(text, name, **labels) == 10, name
    # accepted in one process (the API), submitted and final in another (the workers)
    assert value(text, "ujumbe_messages_accepted_total", channel="sms", dialect="native", state="queued") == 10
    assert value(text, "ujumbe_messages_submitted_total", connector="simulator") == 10
    assert value(text, "ujumbe_submit_latency_seconds_count", connector="simulator") == 10
    assert value(text, "ujumbe_receipt_latency_seconds_count", connector="simulator") == 10
    assert value(text, "ujumbe_callback_latency_seconds_count") >= 10
    assert value(text, "ujumbe_credits_charged_total") > 0
    assert value(text, "ujumbe_http_requests_total", route="/v1/messages", method="POST", status="202") == 10
    assert value(text, "ujumbe_http_requests_total", route="/metrics", status="401") >= 2
    assert "ujumbe_queue_depth 0" in text and "ujumbe_callbacks_pending 0" in text
    assert "ujumbe_queue_oldest_due_age_seconds" in text


async def test_metrics_need_an_admin_token_to_exist(platform: Platform) -> None:
    async with client_of(platform) as api:
        assert (await api.get("/metrics")).status_code == 404  # no admin token configured
        platform.settings.admin_token = "t0ken-for-metrics"
        r = await api.get("/metrics", headers={"authorization": "Bearer t0ken-for-metrics"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert "ujumbe_queue_depth" in r.text


async def test_a_worker_process_is_scraped_on_its_metrics_address(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    account = cli(env, "accounts", "create", "--name", "W", "--email", "w@example.com",
                  "--password", "pass-word-1", "--credits", "100")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port, metrics_port = free_port(), free_port()
    api = await start_server(env, port, "api")
    worker = await start_server(env, 0, "worker", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for i in range(3):
                r = await client.post(f"http://127.0.0.1:{port}/v1/messages", headers=headers,
                                      json={"to": f"07081{i:03d}55", "text": "hi"})
                assert r.status_code == 202

            async def scraped() -> str | None:
                try:
                    text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                except httpx.TransportError:
                    return None
                return text if value(text, "ujumbe_messages_final_total", state="delivered") == 3 else None

            # the worker's own counters: sends and receipts happen in that process
            text = await eventually(scraped, timeout=30, interval=0.2)
    finally:
        stop(api)
        stop(worker)
    assert value(text, "ujumbe_messages_submitted_total", connector="simulator") == 3
    assert value(text, "ujumbe_messages_accepted_total") == 0  # accepted in the API process, scraped there
    assert "ujumbe_queue_depth 0" in text


def test_a_wrong_metrics_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    port = free_port()
    for given, says in (("9464", "must be HOST:PORT, e.g. 127.0.0.1:9464"),
                        (f"127.0.0.1:{port}", "takes the API's port; give it a port of its own")):
        out = subprocess.run([*UJUMBE, "serve", "--port", str(port), "--metrics-listen", given], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and says in out.stderr, out.stderr
        assert "UJUMBE_METRICS_LISTEN" in out.stderr


async def test_a_callback_given_up_is_counted(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 500  # the client's endpoint never takes it
    async with running(tmp_path, None, callback_delay_scale=0.00001, admin_token="t0ken-for-metrics") as platform:
        async with client_of(platform) as api:
            admin = {"authorization": "Bearer t0ken-for-metrics"}

            async def given_up() -> float:
                return value((await api.get("/metrics", headers=admin)).text, "ujumbe_callbacks_given_up_total",
                             kind="dlr")

            before = await given_up()
            account = await make_account(platform)
            await api.put("/v1/account/callbacks", headers=auth(account), json={"dlr_url": receiver.url + "/hook"})
            r = await api.post("/v1/messages", headers=auth(account), json={"to": "0708123456", "text": "hi"})
            assert r.status_code == 202
            await eventually(lambda: _more(given_up, before), timeout=60, interval=0.2)
            text = (await api.get("/metrics", headers=admin)).text
    assert value(text, "ujumbe_callbacks_total", kind="dlr", outcome="failed") >= 30
    assert "ujumbe_callbacks_pending" in text


async def _more(read: Any, before: float) -> bool:
    return await read() > before


async def test_connector_figures_from_a_multi_process_server_on_a_real_smsc(tmp_path: Path) -> None:
    from ujumbe.channels.smpp.sim import SmscSimulator

    sim = SmscSimulator("127.0.0.1", 0, tps=20, receipt_delay_ms=50)  # it throttles a burst
    await sim.start()
    smsc_port = sim.port
    env = env_for(tmp_path / "data", None)
    env.update(UJUMBE_SMPP_REBIND_MAX_S="1", UJUMBE_CONNECTOR_PASSWORD="smsc-pw", UJUMBE_RETRY_BASE_MS="200")
    account = cli(env, "accounts", "create", "--name", "C", "--email", "c@example.com",
                  "--password", "pass-word-1", "--credits", "1000")
    cli(env, "connectors", "add", "op1", "--host", "127.0.0.1", "--port", str(smsc_port), "--system-id", "ujumbe")
    cli(env, "routes", "add", "--kind", "default", "--connector", "op1")
    headers = {"authorization": f"Bearer {account['api_key']}"}
    port, metrics_port = free_port(), free_port()
    proc = await start_server(env, port, "all", "--processes", "2", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async def scrape(check: Any) -> str | None:
                text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                return text if check(text) else None

            await eventually(lambda: scrape(lambda t: value(t, "ujumbe_connector_binds_up", connector="op1") == 1),
                             timeout=30, interval=0.2)
            for i in range(40):
                r = await client.post(f"http://127.0.0.1:{port}/v1/messages", headers=headers,
                                      json={"to": f"07082{i:03d}77", "text": "burst"})
                assert r.status_code == 202
            text = await eventually(lambda: scrape(lambda t: value(
                t, "ujumbe_messages_final_total", connector="op1", state="delivered") == 40
                and value(t, "ujumbe_connector_throttles_total", connector="op1") > 0), timeout=60, interval=0.3)
            assert value(text, "ujumbe_messages_submitted_total", channel="sms", dialect="native", connector="op1") == 40
            assert value(text, "ujumbe_send_retries_total", connector="op1") > 0  # the throttled ones went again
            assert 'ujumbe_connector_in_flight{connector="op1"}' in text
            # the SMSC goes away and comes back on its port: the connector binds again
            await sim.stop()
            await eventually(lambda: scrape(lambda t: value(t, "ujumbe_connector_binds_up", connector="op1") == 0),
                             timeout=30, interval=0.2)
            sim = SmscSimulator("127.0.0.1", smsc_port, receipt_delay_ms=50)
            await sim.start()
            text = await eventually(lambda: scrape(lambda t: value(t, "ujumbe_connector_binds_up", connector="op1") == 1
                                                   and value(t, "ujumbe_connector_reconnects_total", connector="op1") >= 1),
                                    timeout=30, interval=0.2)
    finally:
        stop(proc)
        await sim.stop()
