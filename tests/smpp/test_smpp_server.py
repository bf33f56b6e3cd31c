"""SmppServer: auth, bind limits, throughput caps, queued pushes, and interop
with smpplib, a client we did not write."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from ujumbe.channels.smpp import pdu as P
from ujumbe.channels.smpp.pdu import Pdu, SmppError
from ujumbe.channels.smpp.receipts import receipt_pdu
from ujumbe.channels.smpp.server import SmppServer
from ujumbe.channels.smpp.session import SmppSession
from ujumbe.core.states import State

smpplib = pytest.importorskip("smpplib")
import smpplib.client  # noqa: E402
import smpplib.consts  # noqa: E402
import smpplib.exceptions  # noqa: E402


@dataclass
class Acct:
    id: str
    max_binds: int | None = 2
    tps: float | None = None


class Harness:
    def __init__(self, tps: float | None = None) -> None:
        self.submits: list[tuple[str, Pdu]] = []
        self.tps = tps
        self.server = SmppServer("127.0.0.1", 0, authenticate=self.auth, on_submit=self.submit, bind_timeout_s=5)

    async def auth(self, system_id: str, password: str, system_type: str, mode: str, peer: Any) -> Acct | None:
        if system_id == "cust" and password == "s3cret":
            return Acct("acct-1", tps=self.tps)
        return None

    async def submit(self, session: SmppSession, account: Acct, pdu: Pdu) -> str:
        if pdu.get("destination_addr").endswith("999"):
            raise SmppError(P.ESME_RINVDSTADR)
        self.submits.append((account.id, pdu))
        return f"id{len(self.submits)}"


@pytest.fixture
async def h() -> Any:
    harness = Harness()
    await harness.server.start()
    yield harness
    await harness.server.stop()


async def raw_session(port: int) -> SmppSession:
    loop = asyncio.get_running_loop()
    _, s = await loop.create_connection(lambda: SmppSession(name="t"), "127.0.0.1", port)
    return s


async def test_bind_auth_limit_and_submit(h: Harness) -> None:
    bad = await raw_session(h.server.port)
    with pytest.raises(SmppError) as e:
        await bad.bind("transceiver", "cust", "nope")
    assert e.value.status == P.ESME_RBINDFAIL
    a, b, c = [await raw_session(h.server.port) for _ in range(3)]
    resp = await a.bind("transmitter", "cust", "s3cret")
    assert resp.get("system_id") == "ujumbe" and resp.tlvs[P.TAG_SC_INTERFACE_VERSION] == 0x34
    await b.bind("receiver", "cust", "s3cret")
    with pytest.raises(SmppError) as limit:
        await c.bind("transceiver", "cust", "s3cret")
    assert limit.value.status == P.ESME_RALYBND  # too many binds, not a bad password
    ok = await a.request(Pdu.make("submit_sm", destination_addr="254700000001", short_message=b"hi"))
    assert ok.status == 0 and ok.get("message_id") == "id1" and h.submits[0][0] == "acct-1"
    refused = await a.request(Pdu.make("submit_sm", destination_addr="254700000999", short_message=b"hi"))
    assert refused.status == P.ESME_RINVDSTADR
    rx_submit = await b.request(Pdu.make("submit_sm", destination_addr="1", short_message=b"x"))
    assert rx_submit.status == P.ESME_RINVBNDSTS
    again = await a.request(Pdu.make("bind_transmitter", system_id="cust", password="s3cret"))
    assert again.status == P.ESME_RALYBND
    q = await a.request(Pdu.make("query_sm", message_id="id1"))
    assert q.status == P.ESME_RQUERYFAIL  # the harness answers no queries
    rx_query = await b.request(Pdu.make("query_sm", message_id="id1"))
    assert rx_query.status == P.ESME_RINVBNDSTS  # a receiver bind asks about nothing it sent
    for s in (a, b, c, bad):
        await s.unbind()
    assert not h.server.bound_sessions("acct-1")


async def test_throughput_cap_answers_throttled() -> None:
    harness = Harness(tps=20)
    await harness.server.start()
    try:
        s = await raw_session(harness.server.port)
        await s.bind("transceiver", "cust", "s3cret")
        resps = await asyncio.gather(*(s.request(Pdu.make("submit_sm", destination_addr="1", short_message=b"x")) for _ in range(30)))
        statuses = [r.status for r in resps]
        assert statuses.count(0) >= 1 and statuses.count(P.ESME_RTHROTTLED) >= 20
        await s.unbind()
    finally:
        await harness.server.stop()


async def test_push_round_robin_and_requeue_on_drop(h: Harness) -> None:
    got: dict[str, list[Pdu]] = {"a": [], "b": []}

    def handler(tag: str) -> Any:
        async def handle(sess: SmppSession, pdu: Pdu) -> Pdu:
            got[tag].append(pdu)
            return pdu.response(message_id="")

        return handle

    loop = asyncio.get_running_loop()
    for i in range(5):
        h.server.push("acct-1", receipt_pdu(f"r{i}", State.DELIVERED, source_addr="1", destination_addr="2", submit_at_ms=0))
    assert h.server.queued("acct-1") == 5
    _, a = await loop.create_connection(lambda: SmppSession(handler("a"), name="a"), "127.0.0.1", h.server.port)
    _, b = await loop.create_connection(lambda: SmppSession(handler("b"), name="b"), "127.0.0.1", h.server.port)
    await a.bind("receiver", "cust", "s3cret")
    await b.bind("transceiver", "cust", "s3cret")
    for i in range(5, 40):
        h.server.push("acct-1", receipt_pdu(f"r{i}", State.DELIVERED, source_addr="1", destination_addr="2", submit_at_ms=0))
    for _ in range(100):
        if len(got["a"]) + len(got["b"]) >= 40:
            break
        await asyncio.sleep(0.02)
    ids = sorted(int(p.tlvs[P.TAG_RECEIPTED_MESSAGE_ID][1:]) for p in got["a"] + got["b"])
    assert ids == list(range(40))
    await a.unbind()
    await b.unbind()


# --- smpplib interop -------------------------------------------------------------------


def _smpplib_round_trip(port: int) -> tuple[str, bytes]:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    sent: list[str] = []
    received: list[bytes] = []
    client.set_message_sent_handler(lambda pdu: sent.append(pdu.message_id.decode()))

    def on_message(pdu: Any) -> int:
        received.append(pdu.short_message)
        return 0

    client.set_message_received_handler(on_message)
    client.connect()
    try:
        client.bind_transceiver(system_id="cust", password="s3cret")
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="Shop",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="254700000123",
            short_message=b"Hello from smpplib",
            registered_delivery=True,
        )
        while not sent or not received:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return sent[0], received[0]


def _smpplib_bad_bind(port: int) -> int:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transmitter(system_id="cust", password="wrong")
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0


async def test_smpplib_client_submits_and_gets_receipt() -> None:
    harness = Harness()

    async def submit_and_receipt(session: SmppSession, account: Acct, pdu: Pdu) -> str:
        message_id = await Harness.submit(harness, session, account, pdu)
        harness.server.push(
            account.id,
            receipt_pdu(message_id, State.DELIVERED, source_addr=pdu.get("destination_addr"), destination_addr=pdu.get("source_addr"), submit_at_ms=0),
        )
        return message_id

    harness.server.on_submit = submit_and_receipt
    await harness.server.start()
    try:
        message_id, receipt = await asyncio.wait_for(asyncio.to_thread(_smpplib_round_trip, harness.server.port), 15)
        assert message_id == "id1"
        assert receipt.startswith(b"id:id1 ") and b"stat:DELIVRD" in receipt
        acct, pdu = harness.submits[0]
        assert (acct, pdu.get("source_addr"), pdu.get("source_addr_ton"), pdu.get("short_message")) == ("acct-1", "Shop", 5, b"Hello from smpplib")
        assert await asyncio.wait_for(asyncio.to_thread(_smpplib_bad_bind, harness.server.port), 10) == P.ESME_RBINDFAIL
    finally:
        await harness.server.stop()
