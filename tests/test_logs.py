"""UJUMBE_LOG_FORMAT=json: every line a server writes is one JSON object."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import Receiver, auth, client_of, eventually, free_port
from tests.test_processes import UJUMBE, cli, env_for
from ujumbe.logs import JsonFormatter, PlainFormatter, message_id_var
from ujumbe.runtime import Platform


async def test_serve_with_json_logs_writes_only_json_lines(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", None)
    account = cli(env, "accounts", "create", "--name", "Logs", "--email", "logs@example.com",
                  "--password", "pass-word-1", "--credits", "100")
    env.update(UJUMBE_LOG_FORMAT="json", UJUMBE_LOG_LEVEL="INFO")
    port = free_port()
    proc = subprocess.Popen([*UJUMBE, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    headers = {"authorization": f"Bearer {account['api_key']}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await eventually(lambda: _up(client), timeout=20, interval=0.1)
            r = await client.post("/v1/messages", headers=headers, json={"to": "0708123456", "text": "hello"})
            assert r.status_code == 202
            mid = r.json()["messages"][0]["id"]
            await eventually(lambda: _delivered(client, headers, mid), timeout=20)
            assert (await client.get("/v1/messages/x", headers=headers)).status_code == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = err.decode().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is JSON
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
    requests = [r for r in records if r["logger"] == "ujumbe.http"]
    send = next(r for r in requests if "POST /v1/messages 202" in r["message"])
    assert len(send["request_id"]) == 16
    assert len({r["request_id"] for r in requests}) == len(requests)  # one id per request
    assert account["api_key"] not in err.decode()


async def _up(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def _delivered(client: httpx.AsyncClient, headers: dict[str, str], mid: int) -> bool:
    return (await client.get(f"/v1/messages/{mid}", headers=headers)).json()["state"] == "delivered"


async def test_one_message_can_be_followed_by_its_id_across_api_and_worker_logs(
    tmp_path: Path, receiver: Receiver,
) -> None:
    env = env_for(tmp_path / "data", None)
    account = cli(env, "accounts", "create", "--name", "Trace", "--email", "trace@example.com",
                  "--password", "pass-word-1", "--credits", "100")
    cli(env, "callbacks", "set", account["account_id"], "--dlr-url", receiver.url + "/dlr?token=cb-secret-token")
    receiver.fail_first = 1  # the first callback attempt fails: two attempt lines
    env.update(UJUMBE_LOG_FORMAT="json", UJUMBE_LOG_LEVEL="INFO", UJUMBE_LOG_MESSAGES="on")
    port = free_port()
    # the API in one process, the workers in another: one message's lines come from both
    proc = subprocess.Popen([*UJUMBE, "serve", "--port", str(port), "--processes", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    headers = {"authorization": f"Bearer {account['api_key']}"}
    text = "Your private text 8812"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await eventually(lambda: _up(client), timeout=30, interval=0.1)
            r = await client.post("/v1/messages", headers=headers, json={"to": "0708123456", "text": text})
            assert r.status_code == 202
            sent = r.json()
            mid = sent["messages"][0]["id"]
            await eventually(lambda: _delivered(client, headers, mid), timeout=30)
            await receiver.wait_for(2, timeout=30)  # the submitted and delivered callbacks
            await asyncio.sleep(1)  # a callback's line is written after its answer
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    log = err.decode()
    records = [json.loads(line) for line in log.splitlines()]
    mine = [r for r in records if r.get("message_id") == str(mid)]
    events = [r["event"] for r in mine]
    # in this order (a callback for "submitted" may come before the receipt)
    assert [e for e in events if e != "callback"] == ["accepted", "submitted", "receipt"], events
    accepted, submitted, receipt = (next(r for r in mine if r["event"] == e) for e in ("accepted", "submitted", "receipt"))
    # the accept line carries the HTTP request's id, as its access line does
    access = next(r for r in records if r["logger"] == "ujumbe.http" and "POST /v1/messages 202" in r["message"])
    assert accepted["request_id"] == access["request_id"]
    assert accepted["state"] == "queued" and accepted["account_id"] == account["account_id"]
    assert accepted["send_request"] == sent["request_id"]
    assert submitted["connector"] == "simulator" and submitted["operator_ids"]
    assert receipt["state"] == "delivered" and receipt["operator_id"] == submitted["operator_ids"]
    attempts = [(r["ok"], r["http_status"]) for r in mine if r["event"] == "callback"]
    assert attempts[0] == (False, 500) and attempts[1:] and all(a == (True, 200) for a in attempts[1:]), attempts
    assert {r["logger"] for r in mine} == {"ujumbe.messages"}
    # never the text, the number, the key, the password or the callback URL's token
    for secret in (text, "0708123456", "254708123456", account["api_key"], "pass-word-1", "cb-secret-token"):
        assert secret not in log, secret


def test_a_traceback_stays_in_its_one_line() -> None:
    logger = logging.getLogger("t")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logger.makeRecord("t", logging.ERROR, __file__, 1, "failed on %s", ("x",), __import__("sys").exc_info())
    token = message_id_var.set(42)
    try:
        line = JsonFormatter().format(record)
    finally:
        message_id_var.reset(token)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed on x" and parsed["message_id"] == "42" and "ValueError" in parsed["exception"]
    assert "\n" not in PlainFormatter("%(message)s").format(record)


async def test_send_failures_say_what_comes_next(
    platform: Platform, caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.test_email import account_with_domain, final

    caplog.set_level(logging.DEBUG, logger="ujumbe.messages")  # what UJUMBE_LOG_MESSAGES=on does
    account = await account_with_domain(platform)
    async with client_of(platform) as api:
        r = await api.post("/v1/messages", headers=auth(account), json={
            "to": ["defer@example.org", "reject@example.org"], "subject": "s", "text": "a private text"})
        assert r.status_code == 202
    ids = {m["to"]: m["id"] for m in r.json()["messages"]}
    await final(platform, account, ids["defer@example.org"], timeout=30)
    await final(platform, account, ids["reject@example.org"])
    lines = [rec for rec in caplog.records if rec.name == "ujumbe.messages"]

    def of(mid: int) -> list[tuple[str, str | None]]:
        return [(rec.fields["event"], rec.fields.get("then")) for rec in lines if rec.message_id == mid]

    # the simulator answers defer@ 451 twice, then takes it; reject@ 550 at once
    assert of(ids["defer@example.org"]) == [("accepted", None), ("send_failed", "retry"), ("send_failed", "retry"),
                                            ("submitted", None), ("receipt", None)]
    assert of(ids["reject@example.org"]) == [("accepted", None), ("send_failed", "failed")]
    failed = next(rec for rec in lines if rec.message_id == ids["reject@example.org"] and rec.fields["event"] != "accepted")
    assert failed.fields["error_code"] == "550" and failed.fields["transient"] is False
    assert not any("a private text" in JsonFormatter().format(rec) for rec in lines)
