"""Email as a channel, end to end: the native API, the email simulator, an
aiosmtpd relay (plain, STARTTLS, AUTH, 550, 451, DSN), DKIM verified with
dkimpy, bounces to the VERP address through Ujumbe's listener."""

from __future__ import annotations

import email
import ssl
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import dkim
import httpx
import pytest

from tests.conftest import auth, client_of, eventually, make_account, running
from tests.email_peers import Relay, dsn, self_signed, send_dsn
from ujumbe.channels.email.mime import from_verp
from ujumbe.runtime import Platform

SUBJECT_NE = "तपाईंको अर्डर तयार छ"  # Nepali (Devanagari): "your order is ready"
TEXT = "Habari Wanjiru, oda yako iko tayari. ¡Gracias por su compra, señora Muñoz! नमस्ते।"
HTML = "<p>Habari <b>Wanjiru</b> — ¡Gracias! <i>नमस्ते</i></p>"


async def account_with_domain(platform: Platform, domain: str = "duka.co.ke") -> dict[str, Any]:
    account = await make_account(platform)
    account["domain"] = await platform.domains.add(account["account_id"], domain)
    return account


async def final(platform: Platform, account: dict[str, Any], mid: int, timeout: float = 20) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        m = await platform.messaging.message(account["account_id"], mid)
        return m if m["state"] in ("delivered", "undelivered", "failed", "rejected", "expired") else None

    return await eventually(done, timeout=timeout)


async def state_of(platform: Platform, account: dict[str, Any], mid: int, state: str, timeout: float = 20) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        m = await platform.messaging.message(account["account_id"], mid)
        return m if m["state"] == state else None

    return await eventually(reached, timeout=timeout)


def dns_for(domain: dict[str, Any]) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode().rstrip(".") == domain["dns_name"], name
        return domain["dns_txt"].encode()

    return lookup


async def add_smtp(platform: Platform, relay_port: int, **fields: Any) -> None:
    await platform.routing.add_connector(
        {"name": fields.pop("name", "relay1"), "kind": "smtp", "host": "127.0.0.1", "port": relay_port, **fields}
    )
    await platform.router.reload()


# --- the email simulator on the embedded default ---


async def test_simulator_outcomes_by_address(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await account_with_domain(platform)
    r = await api.post("/v1/messages", headers=auth(account), json={
        "channel": "email", "to": ["ok@example.org", "reject@example.org", "defer@example.org",
                                   "bounce@example.org", "not an address", "ok@example.org"],
        "subject": "Karibu", "text": "Habari ${name}", "params": {"name": "Wanjiru"}, "from": "hello@duka.co.ke",
    })
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["encoding"] == "utf-8" and out["parts"] == 1
    by_to = {m["to"]: m for m in out["messages"]}
    # an invalid address and a repeat are rejected alone; the rest go
    bad = by_to["not an address"]
    assert bad["state"] == "rejected" and bad["error"]["code"] == "invalid_address"
    assert [m["error"]["code"] for m in out["messages"] if m["to"] == "ok@example.org" and m["error"]] == ["duplicate_recipient"]
    ids = {m["to"]: m["id"] for m in out["messages"] if m["state"] != "rejected"}
    assert len(ids) == 4
    ok = await final(platform, account, ids["ok@example.org"])
    assert ok["state"] == "delivered" and ok["sender"] == "hello@duka.co.ke" and ok["body"] == "Habari Wanjiru"
    rejected = await final(platform, account, ids["reject@example.org"])
    assert rejected["state"] == "failed" and rejected["error_code"] == "550" and rejected["cost"] == 0  # refunded
    bounced = await final(platform, account, ids["bounce@example.org"])
    # as the DSN listener reports a real bounce: the DSN status (docs/email.md)
    assert (bounced["state"], bounced["error_code"], bounced["error_reason"]) == ("undelivered", "5.1.1", "user_unknown")
    deferred = await final(platform, account, ids["defer@example.org"], timeout=30)
    assert deferred["state"] == "delivered"
    assert [e["state"] for e in deferred["events"]].count("retry") == 2
    # the same listing and search as SMS, with the subject shown
    got = (await api.get("/v1/messages", headers=auth(account), params={"to": "bounce@example.org"})).json()["data"]
    assert [m["state"] for m in got] == ["undelivered"] and got[0]["channel"] == "email" and got[0]["subject"] == "Karibu"
    # what the "relay" got is a real MIME message
    sent = email.message_from_bytes(platform.email_simulator.sent[0], policy=default_policy)  # type: ignore[union-attr]
    assert sent["Subject"] == "Karibu" and sent["From"] == "hello@duka.co.ke"


async def test_sender_must_be_a_sending_domain(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await make_account(platform)
    body = {"to": "ok@example.org", "subject": "Hi", "text": "Hi"}
    r = await api.post("/v1/messages", headers=auth(account), json=body)  # email inferred from the address
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_sending_domain"
    await platform.domains.add(account["account_id"], "Duka.co.ke")
    other = await make_account(platform)
    await platform.domains.add(other["account_id"], "other.example")
    r = await api.post("/v1/messages", headers=auth(account), json={**body, "from": "boss@other.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "sender_not_verified"
    r = await api.post("/v1/messages", headers=auth(account), json={**body, "subject": None})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_subject"
    r = await api.post("/v1/messages", headers=auth(account), json=body)
    assert r.status_code == 202, r.text
    m = await platform.messaging.message(account["account_id"], r.json()["messages"][0]["id"])
    assert m["sender"] == "no-reply@duka.co.ke" and m["channel"] == "email"


async def test_email_template_with_subject(platform: Platform, api: httpx.AsyncClient) -> None:
    account = await account_with_domain(platform)
    r = await api.put("/v1/templates/order-ready", headers=auth(account), json={
        "channel": "email", "subject": "Oda ${order} iko tayari", "body": "Habari ${name}, oda ${order} iko tayari."})
    assert r.status_code in (200, 201), r.text
    r = await api.post("/v1/messages", headers=auth(account), json={
        "channel": "email", "to": "wanjiru@example.org", "template": "order-ready",
        "params": {"name": "Wanjiru", "order": "17"}})
    assert r.status_code == 202, r.text
    m = await final(platform, account, r.json()["messages"][0]["id"])
    assert m["body"] == "Habari Wanjiru, oda 17 iko tayari." and m["state"] == "delivered"
    got = (await api.get(f"/v1/messages/{m['id']}", headers=auth(account))).json()
    assert got["subject"] == "Oda 17 iko tayari"


# --- a real relay: aiosmtpd ---


async def test_relay_utf8_html_dkim_and_message_id(tmp_path: Path, database_url: str | None) -> None:
    relay = Relay()
    port = await relay.start()
    try:
        async with running(tmp_path, database_url) as platform, client_of(platform) as api:
            await add_smtp(platform, port)
            account = await account_with_domain(platform)
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "email", "to": ["wanjiru@example.org", "plain@example.org"], "subject": SUBJECT_NE,
                "text": TEXT, "html": HTML, "from": "orders@duka.co.ke",
                "unsubscribe_url": "https://duka.co.ke/unsubscribe?to=${to}",
            })
            assert r.status_code == 202, r.text
            got = await relay.wait(2)
            first = next(g for g in got if g.rcpt_tos == ["wanjiru@example.org"])
            # DKIM: verified by dkimpy against the record `ujumbe domains dns` prints
            assert dkim.verify(first.data, dnsfunc=dns_for(account["domain"]))
            msg = email.message_from_bytes(first.data, policy=default_policy)
            assert msg["Subject"] == SUBJECT_NE and msg["From"] == "orders@duka.co.ke"
            assert msg.get_content_type() == "multipart/alternative"
            assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == TEXT  # canonical CRLF inside base64
            assert msg.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n") == HTML
            assert all(len(line) <= 998 for line in first.data.split(b"\r\n"))
            assert first.data.isascii()  # encoded-words and QP/base64: any relay takes it
            # RFC 8058 one-click, signed
            assert msg["List-Unsubscribe"] == "<https://duka.co.ke/unsubscribe?to=wanjiru@example.org>"
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert "list-unsubscribe-post" in msg["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
            # VERP return path names the message; Message-ID is the operator id
            message_id = msg["Message-ID"].strip("<>")
            assert from_verp(first.mail_from) == message_id
            mid = next(m["id"] for m in r.json()["messages"] if m["to"] == "wanjiru@example.org")
            m = await final(platform, account, mid)
            # this relay advertises no DSN: its acceptance is delivery
            assert m["state"] == "delivered", m
            assert any(message_id in (e["detail"] or "") for e in m["events"] if e["state"] == "submitted")
            assert relay.ehlos == 1  # both messages over one reused session (binds 1)
            # a tampered message fails the same check
            assert not dkim.verify(first.data.replace(b"Habari", b"Jambo"), dnsfunc=dns_for(account["domain"]))
    finally:
        await relay.stop()


async def test_relay_starttls_and_auth(tmp_path: Path) -> None:
    relay = Relay()
    port = await relay.start(tls=self_signed(tmp_path), users={"duka": "relay pass phrase"})
    try:
        async with running(tmp_path, None) as platform, client_of(platform) as api:
            # a connector without STARTTLS cannot log in (AUTH needs TLS here): transient, retried
            await add_smtp(platform, port, name="relay-tls", system_id="duka", password="relay pass phrase",
                           options={"starttls": True, "verify": False})
            stored = await platform.store.read(lambda tx: tx.fetchval("SELECT password_enc FROM connectors"))
            assert "relay pass phrase" not in stored  # encrypted at rest
            assert "password_enc" not in await platform.routing.get_connector("relay-tls")
            account = await account_with_domain(platform)
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "email", "to": "wanjiru@example.org", "subject": "Karibu", "text": TEXT})
            assert r.status_code == 202, r.text
            got = (await relay.wait(1))[0]
            assert got.tls and got.authenticated and relay.logins == ["duka"]
            m = await final(platform, account, r.json()["messages"][0]["id"])
            assert m["state"] == "delivered"
    finally:
        await relay.stop()


@pytest.mark.parametrize(("password", "options", "words"), [
    ("right", {"starttls": True}, "CERTIFICATE_VERIFY_FAILED"),  # verify on (the default): self-signed is refused
    ("wrong", {"starttls": True, "verify": False}, "535"),  # a bad relay password fails no message for good
])
async def test_relay_session_failures_are_retried(tmp_path: Path, password: str, options: dict[str, Any], words: str) -> None:
    relay = Relay()
    port = await relay.start(tls=self_signed(tmp_path), users={"duka": "right"})
    try:
        async with running(tmp_path, None) as platform, client_of(platform) as api:
            await add_smtp(platform, port, name="strict", system_id="duka", password=password, options=options)
            account = await account_with_domain(platform)
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "email", "to": "wanjiru@example.org", "subject": "Karibu", "text": "x"})
            mid = r.json()["messages"][0]["id"]

            async def retried() -> list[dict[str, Any]]:
                m = await platform.messaging.message(account["account_id"], mid)
                return [e for e in m["events"] if e["state"] == "retry"]

            retry = (await eventually(retried))[0]
            assert words in retry["detail"], retry
            assert relay.messages == [] and (await platform.messaging.message(account["account_id"], mid))["state"] == "queued"
    finally:
        await relay.stop()


async def test_relay_550_fails_and_451_is_retried(tmp_path: Path, database_url: str | None) -> None:
    relay = Relay()
    port = await relay.start()
    try:
        async with running(tmp_path, database_url) as platform, client_of(platform) as api:
            await add_smtp(platform, port)
            account = await account_with_domain(platform)
            before = (await api.get("/v1/balance", headers=auth(account))).json()
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "email", "to": ["reject@example.org", "defer@example.org", "toobig@example.org"],
                "subject": "Hi", "text": "Hi"})
            ids = {m["to"]: m["id"] for m in r.json()["messages"]}
            rejected = await final(platform, account, ids["reject@example.org"])
            assert rejected["state"] == "failed" and rejected["error_code"] == "550"
            assert "User unknown" in rejected["error_reason"] and rejected["cost"] == 0
            at_data = await final(platform, account, ids["toobig@example.org"])
            assert at_data["state"] == "failed" and at_data["error_code"] == "552" and at_data["cost"] == 0
            assert at_data["error_reason"].startswith("DATA 552")
            deferred = await final(platform, account, ids["defer@example.org"], timeout=30)
            assert deferred["state"] == "delivered"
            assert [e for e in deferred["events"] if e["state"] == "retry"][0]["detail"].startswith("attempt 1 failed (RCPT 451")
            assert [g.rcpt_tos for g in relay.messages] == [["defer@example.org"]]
            after = (await api.get("/v1/balance", headers=auth(account))).json()
            assert before["balance"] - after["balance"] == 1  # one charged, the refused ones refunded
    finally:
        await relay.stop()


async def test_dsn_bounce_and_success_through_the_listener(tmp_path: Path, database_url: str | None) -> None:
    relay = Relay(dsn=True)
    port = await relay.start()
    try:
        async with running(tmp_path, database_url, bounce_port=0) as platform, client_of(platform) as api:
            await add_smtp(platform, port)
            account = await account_with_domain(platform)
            r = await api.post("/v1/messages", headers=auth(account), json={
                "channel": "email", "to": ["gone@example.org", "here@example.org"], "subject": "Hi", "text": "Hi"})
            ids = {m["to"]: m["id"] for m in r.json()["messages"]}
            got = {g.rcpt_tos[0]: g for g in await relay.wait(2)}
            # the relay offers DSN: we ask for both outcomes
            assert "NOTIFY=SUCCESS,FAILURE" in got["gone@example.org"].rcpt_options
            assert any(o.startswith("ENVID=") for o in got["gone@example.org"].mail_options)
            # accepted by the relay is only submitted until the DSN says more
            await state_of(platform, account, ids["gone@example.org"], "submitted")
            gone, here = got["gone@example.org"], got["here@example.org"]
            await send_dsn(platform.bounces.port, gone.mail_from, dsn(
                gone.mail_from, "gone@example.org", action="failed", status="5.1.1",
                diagnostic="550 5.1.1 The email account that you tried to reach does not exist"))
            m = await state_of(platform, account, ids["gone@example.org"], "undelivered")
            assert m["error_code"] == "5.1.1" and m["error_reason"] == "user_unknown"
            assert any("does not exist" in (e["detail"] or "") for e in m["events"])
            await send_dsn(platform.bounces.port, here.mail_from, dsn(here.mail_from, "here@example.org",
                                                                       action="delivered", status="2.0.0"))
            assert (await state_of(platform, account, ids["here@example.org"], "delivered"))["error_code"] is None
            # the listener is no open sink: only VERP addresses are taken
            with pytest.raises(Exception, match="550"):
                await send_dsn(platform.bounces.port, "postmaster@duka.co.ke", b"Subject: x\r\n\r\nx\r\n")
    finally:
        await relay.stop()


async def test_email_uses_the_simulator_when_only_smpp_connectors_exist(platform: Platform, api: httpx.AsyncClient) -> None:
    # an SMPP connector (even one that never binds) must not strand email
    await platform.routing.add_connector({"name": "op1", "host": "127.0.0.1", "port": 1, "system_id": "x",
                                          "password": "y"})
    await platform.routing.add_route(kind="default", connector="op1")
    await platform.router.reload()
    account = await account_with_domain(platform)
    r = await api.post("/v1/messages", headers=auth(account), json={
        "channel": "email", "to": "ok@example.org", "subject": "Hi", "text": "Hi"})
    m = await final(platform, account, r.json()["messages"][0]["id"])
    assert m["state"] == "delivered" and m["connector"] == "email-simulator"


def test_tls_helper_makes_a_server_context(tmp_path: Path) -> None:
    assert isinstance(self_signed(tmp_path), ssl.SSLContext)


async def test_cli_domain_dns_record_and_smtp_connector(tmp_path: Path) -> None:
    import asyncio
    import json
    import os
    import sys

    from tests.conftest import make_settings
    from ujumbe.runtime import Platform as P

    relay = Relay()
    port = await relay.start()
    settings = make_settings(tmp_path, None, routing_poll_s=0.2)
    platform = P(settings)
    await platform.start("all")
    env = {**os.environ, "UJUMBE_DATA_DIR": str(settings.data_dir), "UJUMBE_SECRET_KEY": settings.load_secret(),
           "UJUMBE_CONNECTOR_PASSWORD": ""}
    env.pop("UJUMBE_DATABASE_URL", None)

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ujumbe", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    try:
        account = await make_account(platform)
        code, out, err = await cli("domains", "add", account["account_id"], "Duka.co.ke", "--selector", "s1")
        assert code == 0, err
        assert json.loads(out)["dns_name"] == "s1._domainkey.duka.co.ke" and "PRIVATE" not in out
        code, out, err = await cli("domains", "dns", "duka.co.ke")
        assert code == 0, err
        name, _, rest = out.strip().partition(". IN TXT ")
        txt = rest.strip('"')
        assert name == "s1._domainkey.duka.co.ke" and txt.startswith("v=DKIM1; k=rsa; p=")
        code, out, err = await cli("connectors", "add", "relay-cli", "--kind", "smtp", "--host", "127.0.0.1",
                                   "--port", str(port), "--binds", "2", "--no-verify")
        assert code == 0, err
        assert json.loads(out)["kind"] == "smtp" and json.loads(out)["options"] == {"verify": False}
        code, out, err = await cli("connectors", "add", "bad", "--kind", "smtp", "--host", "127.0.0.1",
                                   "--port", str(port), "--tls", "--starttls")
        assert code == 1 and "not both" in err

        async def running_here() -> bool:
            return platform.router.status("relay-cli") is not None

        await eventually(running_here)
        async with client_of(platform) as api:
            r = await api.post("/v1/messages", headers=auth(account), json={
                "to": "wanjiru@example.org", "subject": SUBJECT_NE, "text": TEXT, "from": "orders@duka.co.ke"})
            assert r.status_code == 202, r.text
        got = (await relay.wait(1))[0]
        assert dkim.verify(got.data, dnsfunc=lambda n, timeout=5: txt.encode())
        m = await final(platform, account, r.json()["messages"][0]["id"])
        assert m["state"] == "delivered" and m["connector"] == "relay-cli"
    finally:
        await platform.stop()
        await relay.stop()


@pytest.mark.parametrize("subject", [
    "Karibu", SUBJECT_NE * 6, "¡Gracias por su compra, señora Muñoz!", "=?utf-8?b?not-a-word?= as typed", "a" * 300,
])
@pytest.mark.parametrize("html", [None, HTML])
def test_mime_any_script_is_7bit_and_reads_back(subject: str, html: str | None) -> None:
    from ujumbe.channels.base import Outbound
    from ujumbe.channels.email.mime import build

    text = TEXT + "\n.a line starting with a dot\ntrailing spaces   \n" + "नमस्ते " * 40 + "\n" + "x" * 200
    built = build(Outbound("7", "acc", "orders@duka.co.ke", "wanjiru@example.org", text, "utf-8", 1,
                           meta={"subject": subject, **({"html": html} if html else {})}))
    assert built.data.isascii() and all(len(line) <= 78 for line in built.data.split(b"\r\n") if b"Subject" not in line)
    assert b"\n" not in built.data.replace(b"\r\n", b"")  # CRLF only
    msg = email.message_from_bytes(built.data, policy=default_policy)
    assert msg["Subject"] == subject and msg["Message-ID"] == f"<{built.message_id}>"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    if html:
        assert msg.get_content_type() == "multipart/alternative"
        assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html
    else:
        assert msg.get_content_type() == "text/plain"
    assert from_verp(built.return_path) == built.message_id


async def test_smtp_url_points_the_embedded_default_at_a_relay(tmp_path: Path, database_url: str | None) -> None:
    relay = Relay()
    port = await relay.start(users={"duka": "p@ss word"})
    try:
        url = f"smtp://duka:p%40ss%20word@127.0.0.1:{port}"  # no TLS offered: plain, on loopback
        async with running(tmp_path, database_url, smtp_url=url) as platform, client_of(platform) as api:
            assert platform.email_simulator is None
            account = await account_with_domain(platform)
            r = await api.post("/v1/messages", headers=auth(account), json={
                "to": "wanjiru@example.org", "subject": "Karibu", "text": "Habari"})
            m = await final(platform, account, r.json()["messages"][0]["id"])
            assert m["state"] == "delivered" and m["connector"] == "smtp-relay" and relay.logins == ["duka"]
    finally:
        await relay.stop()


async def test_admin_api_smtp_connector(tmp_path: Path) -> None:
    relay = Relay()
    port = await relay.start(users={"duka": "secret phrase"})
    admin = {"authorization": "Bearer admin-test-token"}
    try:
        async with running(tmp_path, None, admin_token="admin-test-token") as platform, client_of(platform) as api:
            r = await api.post("/admin/v1/connectors", headers=admin, json={
                "name": "relay-api", "kind": "smtp", "host": "127.0.0.1", "port": port, "system_id": "duka",
                "password": "secret phrase", "binds": 2, "window": 4, "tps": 100, "options": {"verify": False}})
            assert r.status_code == 201, r.text
            out = r.json()
            assert out["kind"] == "smtp" and out["options"] == {"verify": False} and out["password_set"]
            assert "secret phrase" not in r.text
            r = await api.post("/admin/v1/connectors", headers=admin, json={
                "name": "bad", "kind": "smtp", "host": "127.0.0.1", "port": port, "options": {"colour": "red"}})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_connector"
            r = await api.patch("/admin/v1/connectors/relay-api", headers=admin, json={"options": {"starttls": False}})
            assert r.status_code == 200 and r.json()["options"] == {"verify": False, "starttls": False}
            account = await make_account(platform)
            r = await api.post(f"/admin/v1/accounts/{account['account_id']}/domains", headers=admin,
                               json={"domain": "duka.co.ke"})
            assert r.status_code == 201 and r.json()["dns_txt"].startswith("v=DKIM1; k=rsa; p=")
            r = await api.post(f"/admin/v1/accounts/{account['account_id']}/domains", headers=admin,
                               json={"domain": "duka.co.ke"})
            assert r.status_code == 409
            listed = (await api.get(f"/admin/v1/accounts/{account['account_id']}/domains", headers=admin)).json()
            assert [d["domain"] for d in listed["data"]] == ["duka.co.ke"]
            await platform.router.reload()
            r = await api.post("/v1/messages", headers=auth(account), json={
                "to": "wanjiru@example.org", "subject": "Karibu", "text": "Habari"})
            m = await final(platform, account, r.json()["messages"][0]["id"])
            assert m["connector"] == "relay-api" and m["state"] == "delivered"
            assert (await api.delete("/admin/v1/domains/duka.co.ke", headers=admin)).status_code == 204
            r = await api.post("/v1/messages", headers=auth(account), json={
                "to": "wanjiru@example.org", "subject": "Karibu", "text": "Habari"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "no_sending_domain"
    finally:
        await relay.stop()


async def test_connector_rate_limit_and_pool(tmp_path: Path) -> None:
    import asyncio
    import time

    from ujumbe.channels.base import Outbound
    from ujumbe.channels.email.smtp import SmtpConnector

    relay = Relay()
    port = await relay.start()
    try:
        c = SmtpConnector("127.0.0.1", port, pool=2, concurrency=8, tps=20)
        started = time.monotonic()
        await asyncio.gather(*(c.send(Outbound(str(i), "a", "o@duka.co.ke", f"u{i}@example.org", "x", "utf-8", 1,
                                               meta={"subject": "s"})) for i in range(10)))
        elapsed = time.monotonic() - started
        assert len(relay.messages) == 10 and relay.ehlos <= 2  # at most the pool's two sessions
        assert elapsed >= 0.4  # 10 at 20/s: the first at once, then one every 50 ms
        await c.stop()
    finally:
        await relay.stop()
