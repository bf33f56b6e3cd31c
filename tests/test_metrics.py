"""GET /metrics from a multi-process server: the figures move under load."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from tests.conftest import Receiver, client_of, eventually, free_port
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
                ok = (value(text, "ujumbe_messages_final_total", state="delivered", connector="simulator") == 10
                      and value(text, "ujumbe_callbacks_total", outcome="sent") >= 10)
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
