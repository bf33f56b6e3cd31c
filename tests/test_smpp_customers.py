"""SMPP customers: accounts bind to Ujumbe's SMPP server with smpplib (a client
we did not write), submit through the same pipeline as /v1, and get delivery
receipts and inbound messages back as deliver_sm. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ujumbe.channels.smpp import pdu as P
from ujumbe.services import smpp_credentials
from ujumbe.runtime import Platform
from ujumbe.store import now_ms

from tests.conftest import auth, eventually, make_account, client_of, running

smpplib = pytest.importorskip("smpplib")
import smpplib.client  # noqa: E402
import smpplib.consts  # noqa: E402
import smpplib.exceptions  # noqa: E402


@pytest.fixture
async def platform(tmp_path: Path, database_url: str | None) -> AsyncIterator[Platform]:
    """The conftest platform, plus the customers' SMPP server on a free port."""
    # expire_every_s: a message past its validity expires within a second, not five
    async with running(tmp_path, database_url, smpp_port=0, expire_every_s=0.5) as p:
        yield p


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(platform) as client:
        yield client


class Esme:
    """A customer's SMPP client: smpplib on a thread, reading in the background."""

    def __init__(self, port: int) -> None:
        # timeout: how long a bind may take to be answered (an argon2 check: seconds on a busy
        # machine, e.g. beside other test workers), and how idle the reader gets before an enquire_link
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=15, allow_unknown_opt_params=True)
        self.delivered: list[Any] = []  # deliver_sm PDUs, in arrival order
        self.resps: dict[int, tuple[int, str]] = {}  # submit sequence -> (status, message_id)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        send = self.client.send_pdu

        def locked_send(p: Any) -> Any:
            # the reader thread answers deliver_sm while the test submits
            with self._lock:
                return send(p)

        self.client.send_pdu = locked_send
        self.client.set_message_received_handler(self._on_deliver)
        self.client.set_message_sent_handler(self._on_resp)
        self.client.set_error_pdu_handler(lambda pdu: None)  # statuses are read in _on_resp

    def _on_deliver(self, pdu: Any) -> int:
        self.delivered.append(pdu)
        return 0

    def _on_resp(self, pdu: Any) -> None:
        mid = pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else (pdu.message_id or "")
        self.resps[pdu.sequence] = (int(pdu.status), mid)

    def _bind(self, mode: str, system_id: str, password: str) -> None:
        self.client.connect()
        getattr(self.client, f"bind_{mode}")(system_id=system_id, password=password)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.read_once()
            except Exception:
                if not self._stop.is_set():
                    self._stop.set()
                return

    async def bind(self, mode: str, system_id: str, password: str) -> None:
        await asyncio.to_thread(self._bind, mode, system_id, password)

    def submit(self, destination: str, text: bytes = b"", **kw: Any) -> int:
        fields: dict[str, Any] = dict(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="Duka",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=destination, short_message=text, registered_delivery=True,
        )
        fields.update(kw)
        return int(self.client.send_message(**fields).sequence)

    async def resp(self, seq: int) -> tuple[int, str]:
        return await eventually(lambda: _value(self.resps.get(seq)), timeout=15)

    async def receipt_for(self, message_id: str) -> Any:
        async def found() -> Any:
            return next((p for p in self.delivered if _text(p.receipted_message_id) == message_id), None)

        return await eventually(found, timeout=20)

    async def close(self) -> None:
        self._stop.set()
        sock = getattr(self.client, "_socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
        await asyncio.to_thread(self.client.disconnect)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)


async def _value(v: Any) -> Any:
    return v


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v or "")


async def bind_error(port: int, mode: str, system_id: str, password: str) -> int:
    esme = Esme(port)
    try:
        await esme.bind(mode, system_id, password)
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        await esme.close()
    return 0


async def customer(platform: Platform, api: httpx.AsyncClient, credits: str | None = "100", **kw: Any) -> tuple[dict[str, Any], str, str]:
    """An account that set its SMPP credentials through the API."""
    account = await make_account(platform, credits=credits, **kw)
    system_id, password = "c" + account["account_id"][-10:], "pw" + account["account_id"][-6:]
    r = await api.put("/v1/smpp/credentials", headers=auth(account), json={"system_id": system_id, "password": password})
    assert r.status_code == 200, r.text
    return account, system_id, password


async def test_transceiver_submit_goes_through_the_pipeline_and_gets_its_receipt(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    account, system_id, password = await customer(platform, api)
    assert platform.smpp_port
    esme = Esme(platform.smpp_port)
    await esme.bind("transceiver", system_id, password)
    try:
        # a local number, read in the account's region (KE)
        status, message_id = await esme.resp(esme.submit("0708400123", b"Habari from SMPP"))
        assert status == 0 and message_id.isdigit()
        msg = (await api.get(f"/v1/messages/{message_id}", headers=auth(account))).json()
        assert (msg["to"], msg["text"], msg["sender"]) == ("254708400123", "Habari from SMPP", "Duka")
        assert (await platform.messaging.message(account["account_id"], int(message_id)))["dialect"] == "smpp"

        receipt = await esme.receipt_for(message_id)
        assert receipt.esm_class == P.ESM_DELIVERY_RECEIPT and receipt.message_state == 2
        assert receipt.short_message.startswith(f"id:{message_id} sub:001 dlvrd:001 ".encode())
        assert b"stat:DELIVRD err:000 text:Habari from SMPP" in receipt.short_message
        assert (_text(receipt.source_addr), _text(receipt.destination_addr)) == ("254708400123", "Duka")
        msg = (await api.get(f"/v1/messages/{message_id}", headers=auth(account))).json()
        assert msg["state"] == "delivered"

        async def acknowledged() -> Any:
            page = (await api.get("/v1/callbacks", headers=auth(account), params={"status": "delivered"})).json()
            return [c for c in page["data"] if c["message_id"] == int(message_id)]

        row = (await eventually(acknowledged))[0]
        assert row["url"] == f"smpp:{account['account_id']}" and row["attempts"] == 1
    finally:
        await esme.close()


async def test_receiver_bind_gets_receipts_for_a_transmitter_bind_and_bind_limit(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    account = await make_account(platform)
    creds = await smpp_credentials.set_credentials(
        platform.store, account["account_id"], "duka-rx", "s3cret", max_binds=2, limits=True
    )
    assert creds["max_binds"] == 2 and creds["tps"] is None
    tx, rx = Esme(platform.smpp_port or 0), Esme(platform.smpp_port or 0)
    await tx.bind("transmitter", "duka-rx", "s3cret")
    await rx.bind("receiver", "duka-rx", "s3cret")
    try:
        assert await bind_error(platform.smpp_port or 0, "transceiver", "duka-rx", "s3cret") == P.ESME_RALYBND
        # registered_delivery 2 = a receipt only on failure
        ok_seq = tx.submit("254708400124", b"no receipt wanted", registered_delivery=2)
        bad_seq = tx.submit("254708400002", b"absent subscriber", registered_delivery=1)
        (s1, delivered_id), (s2, failed_id) = await tx.resp(ok_seq), await tx.resp(bad_seq)
        assert s1 == s2 == 0
        receipt = await rx.receipt_for(failed_id)
        assert b"stat:UNDELIV" in receipt.short_message and b"err:001" in receipt.short_message
        assert receipt.message_state == 5

        async def final() -> bool:
            msg = await platform.messaging.message(account["account_id"], int(delivered_id), with_events=False)
            return msg["state"] == "delivered"

        await eventually(final)
        # the state change and its callback commit together: none was queued
        rows = await platform.store.read(
            lambda t: t.fetch("SELECT id FROM callbacks WHERE message_id = ?", int(delivered_id))
        )
        assert rows == []
        assert all(_text(p.receipted_message_id) != delivered_id for p in rx.delivered + tx.delivered)
    finally:
        await tx.close()
        await rx.close()


async def test_wrong_credentials_are_refused_with_bindfail(platform: Platform, api: httpx.AsyncClient) -> None:
    _, system_id, password = await customer(platform, api)
    port = platform.smpp_port or 0
    assert await bind_error(port, "transmitter", system_id, "wrong") == P.ESME_RBINDFAIL
    assert await bind_error(port, "transceiver", "nobody", password) == P.ESME_RBINDFAIL
    assert await bind_error(port, "receiver", system_id, password) == 0
    stored = await platform.store.read(
        lambda t: t.fetchval("SELECT password_hash FROM smpp_credentials WHERE system_id = ?", system_id)
    )
    assert stored.startswith("$argon2") and password not in stored


async def test_inbound_to_an_smpp_number_arrives_as_deliver_sm(platform: Platform, api: httpx.AsyncClient) -> None:
    account, system_id, password = await customer(platform, api)
    await platform.store.run(
        lambda t: t.execute(
            "INSERT INTO numbers (number, account_id, kind, dialect, created_at) VALUES (?, ?, 'shortcode', 'smpp', ?)",
            "22384", account["account_id"], now_ms(),
        )
    )
    esme = Esme(platform.smpp_port or 0)
    await esme.bind("receiver", system_id, password)
    try:
        assert platform.simulator is not None
        await platform.simulator.inject_inbound("254722000111", "22384", "STOP offers")
        await platform.simulator.inject_inbound("254722000111", "22384", "Asante sana 🙏")

        async def both() -> Any:
            return esme.delivered if len(esme.delivered) >= 2 else None

        first, second = sorted(await eventually(both), key=lambda p: p.data_coding)
        assert first.esm_class == 0 and first.data_coding == 0
        assert (_text(first.source_addr), _text(first.destination_addr), first.short_message) == (
            "254722000111", "22384", b"STOP offers",
        )
        assert second.data_coding == 8 and second.short_message.decode("utf-16-be") == "Asante sana 🙏"
    finally:
        await esme.close()


async def test_long_ucs2_message_in_message_payload(platform: Platform, api: httpx.AsyncClient) -> None:
    account, system_id, password = await customer(platform, api)
    text = "Karibu Ujumbe — ujumbe mrefu wa majaribio, wenye herufi kama ñ na 🙏, unaotumwa kwa SMPP!" * 1
    text = (text + " " + text)[:120]
    assert len(text.encode("utf-16-be")) > 140  # more than one SMS
    esme = Esme(platform.smpp_port or 0)
    await esme.bind("transceiver", system_id, password)
    try:
        seq = esme.submit("254708400125", b"", data_coding=smpplib.consts.SMPP_ENCODING_ISO10646,
                          message_payload=text.encode("utf-16-be"))
        status, message_id = await esme.resp(seq)
        assert status == 0
        msg = (await api.get(f"/v1/messages/{message_id}", headers=auth(account))).json()
        assert (msg["text"], msg["encoding"], msg["parts"]) == (text, "ucs2", 2)
        receipt = await esme.receipt_for(message_id)
        assert b"stat:DELIVRD" in receipt.short_message
    finally:
        await esme.close()


async def test_refused_submits_get_smpp_statuses_and_store_nothing(platform: Platform, api: httpx.AsyncClient) -> None:
    account, system_id, password = await customer(platform, api, credits=None, max_chars=30)
    esme = Esme(platform.smpp_port or 0)
    await esme.bind("transceiver", system_id, password)
    try:
        no_credit = esme.submit("254708400126", b"costs more than we have")
        bad_number = esme.submit("12", b"to nowhere")
        too_long = esme.submit("254708400126", b"x" * 31)
        assert (await esme.resp(no_credit))[0] == P.ESME_RSUBMITFAIL
        assert (await esme.resp(bad_number))[0] == P.ESME_RINVDSTADR
        assert (await esme.resp(too_long))[0] == P.ESME_RINVMSGLEN
        page = (await api.get("/v1/messages", headers=auth(account))).json()
        assert page["data"] == []
        assert (await api.get("/v1/balance", headers=auth(account))).json() == {"balance": 0}
    finally:
        await esme.close()


async def test_credentials_endpoint_validates_and_keeps_accounts_apart(platform: Platform, api: httpx.AsyncClient) -> None:
    a, b = await make_account(platform), await make_account(platform)
    r = await api.put("/v1/smpp/credentials", headers=auth(a), json={"system_id": "shared", "password": "far-too-long"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_password"
    r = await api.put("/v1/smpp/credentials", headers=auth(a), json={"system_id": "shared", "password": "pass1"})
    assert r.status_code == 200 and r.json()["system_id"] == "shared" and "password" not in r.json()
    r = await api.put("/v1/smpp/credentials", headers=auth(b), json={"system_id": "shared", "password": "pass2"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "system_id_taken"
    assert (await api.get("/v1/smpp/credentials", headers=auth(b))).status_code == 404
    assert (await api.put("/v1/smpp/credentials", json={"system_id": "x", "password": "y"})).status_code == 401
    r = await api.put("/v1/smpp/credentials", headers=auth(a), json={"system_id": "shared", "passwd": "x"})
    assert r.status_code == 400
    # the account changes its password; the operator's limits stay
    await smpp_credentials.set_credentials(platform.store, a["account_id"], "shared", "pass1", max_binds=5, tps=20, limits=True)
    r = await api.put("/v1/smpp/credentials", headers=auth(a), json={"system_id": "shared", "password": "pass3"})
    assert (r.json()["max_binds"], r.json()["tps"]) == (5, 20)
    assert await bind_error(platform.smpp_port or 0, "transmitter", "shared", "pass1") == P.ESME_RBINDFAIL
    assert await bind_error(platform.smpp_port or 0, "transmitter", "shared", "pass3") == 0


async def test_receipts_wait_for_the_next_receiver_bind(platform: Platform, api: httpx.AsyncClient) -> None:
    account, system_id, password = await customer(platform, api)
    tx = Esme(platform.smpp_port or 0)
    await tx.bind("transmitter", system_id, password)
    rx = Esme(platform.smpp_port or 0)
    try:
        status, message_id = await tx.resp(tx.submit("254708400127", b"while nobody listens"))
        assert status == 0

        async def tried_without_a_receiver() -> Any:
            rows = await platform.store.read(
                lambda t: t.fetch("SELECT status, attempts FROM callbacks WHERE message_id = ?", int(message_id))
            )
            return rows and rows[0]["attempts"] >= 1 and rows[0]["status"] == "pending"

        await eventually(tried_without_a_receiver)
        assert tx.delivered == []  # a transmitter bind is never sent deliver_sm
        await rx.bind("receiver", system_id, password)
        receipt = await rx.receipt_for(message_id)
        assert b"stat:DELIVRD" in receipt.short_message
    finally:
        await tx.close()
        await rx.close()


async def test_data_sm_udh_segments_and_a_busy_server(platform: Platform, api: httpx.AsyncClient) -> None:
    from ujumbe.channels.smpp.pdu import Pdu
    from ujumbe.channels.smpp.session import SmppSession

    account, system_id, password = await customer(platform, api)
    loop = asyncio.get_running_loop()
    _, s = await loop.create_connection(lambda: SmppSession(name="esme"), "127.0.0.1", platform.smpp_port or 0)
    try:
        await s.bind("transmitter", system_id, password)
        resp = await s.request(Pdu.make("data_sm", source_addr="Duka", destination_addr="254708400128",
                                        registered_delivery=1, tlvs={"message_payload": b"Data SM text"}))
        assert resp.status == 0
        # Each UDH segment the customer splits itself is a message of its own (see docs/smpp-server.md).
        ids = []
        for seq, chunk in ((1, b"first half "), (2, b"second half")):
            udh = bytes((5, 0, 3, 0x2A, 2, seq))
            r = await s.request(Pdu.make("submit_sm", source_addr="Duka", destination_addr="254708400128",
                                         esm_class=0x40, short_message=udh + chunk))
            assert r.status == 0
            ids.append(int(r.get("message_id")))
        texts = [(await platform.messaging.message(account["account_id"], i))["body"] for i in ids]
        assert texts == ["first half ", "second half"]
        data_sm = await platform.messaging.message(account["account_id"], int(resp.get("message_id")))
        assert (data_sm["body"], data_sm["recipient"], data_sm["dialect"]) == ("Data SM text", "254708400128", "smpp")

        platform.smpp.max_in_flight = 0  # the store is as busy as we let it get
        busy = await s.request(Pdu.make("submit_sm", destination_addr="254708400128", short_message=b"later"))
        assert busy.status == P.ESME_RTHROTTLED
        platform.smpp.max_in_flight = 100
        binary = await s.request(Pdu.make("submit_sm", destination_addr="254708400128", data_coding=4, short_message=b"\x01"))
        assert binary.status == P.ESME_RSUBMITFAIL
        await s.unbind()
    finally:
        s.close()


async def test_schedule_validity_and_query_sm(platform: Platform, api: httpx.AsyncClient) -> None:
    """A customer's schedule_delivery_time holds the message back, its
    validity_period expires one the operator never confirms, and query_sm
    reports each message's state; bad times get their own SMPP statuses."""
    account, system_id, password = await customer(platform, api)
    other, other_id, other_pw = await customer(platform, api)
    esme, stranger = Esme(platform.smpp_port or 0), Esme(platform.smpp_port or 0)
    queries: dict[int, Any] = {}
    esme.client.set_query_resp_handler(lambda pdu, **kw: queries.__setitem__(pdu.sequence, pdu))
    await esme.bind("transceiver", system_id, password)
    await stranger.bind("transceiver", other_id, other_pw)

    async def query(message_id: str) -> Any:
        seq = esme.client.query_message(
            message_id=message_id, source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="Duka",
        ).sequence
        return await eventually(lambda: _value(queries.get(seq)), timeout=15)

    try:
        # an hour from now (relative form): accepted, not sent
        later = esme.submit("254708400131", b"later", schedule_delivery_time="000000010000000R")
        # validity 2 s on a number whose operator never sends a receipt
        brief = esme.submit("254708400005", b"brief", validity_period="000000000002000R")
        sent = esme.submit("254708400132", b"now")
        bad_schedule = esme.submit("254708400133", b"x", schedule_delivery_time="tomorrow")
        past_expiry = esme.submit("254708400134", b"x", validity_period="200101000000000+")
        later_id, brief_id, sent_id = [(await esme.resp(s))[1] for s in (later, brief, sent)]
        assert (await esme.resp(bad_schedule))[0] == P.ESME_RINVSCHED
        assert (await esme.resp(past_expiry))[0] == P.ESME_RINVEXPIRY

        receipt = await esme.receipt_for(sent_id)
        assert receipt.message_state == 2
        answer = await query(sent_id)
        assert (answer.status, answer.message_state, _text(answer.message_id)) == (0, 2, sent_id)
        done_at = (await platform.messaging.message(account["account_id"], int(sent_id)))["done_at"]
        assert _text(answer.final_date) == time.strftime("%y%m%d%H%M%S", time.gmtime(done_at // 1000)) + f"{done_at % 1000 // 100}00+"

        held = await platform.messaging.message(account["account_id"], int(later_id))
        assert held["state"] == "accepted" and held["submitted_at"] is None
        answer = await query(later_id)
        assert (answer.message_state, _text(answer.final_date)) == (1, "")  # ENROUTE, not final

        expired = await esme.receipt_for(brief_id)
        assert expired.message_state == 3 and b"stat:EXPIRED" in expired.short_message
        msg = await platform.messaging.message(account["account_id"], int(brief_id))
        assert msg["state"] == "expired" and 0 < msg["expires_at"] - msg["created_at"] <= 2_000

        # another account's message reads as unknown; a non-numeric id is invalid
        assert (await query("12ab")).status == P.ESME_RINVMSGID
        # past what the store holds (2^63 and up) is invalid too, not a system error
        for too_big in ("9223372036854775808", "9" * 64):
            assert (await query(too_big)).status == P.ESME_RINVMSGID, too_big
        seq = stranger.client.query_message(message_id=sent_id, source_addr="Duka").sequence
        failed: dict[int, Any] = {}
        stranger.client.set_query_resp_handler(lambda pdu, **kw: failed.__setitem__(pdu.sequence, pdu))
        assert (await eventually(lambda: _value(failed.get(seq)), timeout=15)).status == P.ESME_RQUERYFAIL
    finally:
        await esme.close()
        await stranger.close()
