"""SmppConnector against our simulator: binds, window, throttling, drops, long
messages, encodings, receipts and MO reassembly."""

from __future__ import annotations

import asyncio

import pytest
from smpp_helpers import ConnectorFactory, Events, outbound

from ujumbe.channels.base import SendError
from ujumbe.channels.smpp import pdu as P
from ujumbe.channels.smpp.client import decode_sm, parse_udh, relative_validity
from ujumbe.channels.smpp.pdu import Pdu
from ujumbe.channels.smpp.receipts import id_variants
from ujumbe.channels.smpp.sim import SmscSimulator
from ujumbe.core.states import State


def reassemble(pdus: list[Pdu]) -> str:
    """What a handset would show: parts ordered by their concat headers."""
    parts: list[tuple[int, bytes]] = []
    dc = pdus[0].get("data_coding")
    for p in pdus:
        sm = p.get("short_message")
        if not sm and P.TAG_MESSAGE_PAYLOAD in p.tlvs:
            return decode_sm(p.tlvs[P.TAG_MESSAGE_PAYLOAD], dc)
        if p.get("esm_class") & P.ESM_UDHI:
            concat, body = parse_udh(sm)
            assert concat is not None and concat[1] == len(pdus)
            parts.append((concat[2], body))
        elif P.TAG_SAR_SEGMENT_SEQNUM in p.tlvs:
            assert p.tlvs[P.TAG_SAR_TOTAL_SEGMENTS] == len(pdus)
            parts.append((p.tlvs[P.TAG_SAR_SEGMENT_SEQNUM], sm))
        else:
            parts.append((1, sm))
    return decode_sm(b"".join(b for _, b in sorted(parts)), dc)


@pytest.mark.parametrize("mode", ["transceiver", "transmitter"])
async def test_bind_and_send(sim: SmscSimulator, connect: ConnectorFactory, mode: str) -> None:
    c = await connect(sim.port, bind=mode)
    assert c.binds_up == 1
    sent = await c.send(outbound("hello"))
    assert len(sent.operator_ids) == 1
    assert sim.server.bound_sessions("test")[0].bound == mode


async def test_receiver_bind_gets_receipts_but_cannot_send(sim: SmscSimulator, connect: ConnectorFactory, events: Events) -> None:
    tx = await connect(sim.port, bind="transmitter")
    rx = await connect(sim.port, bind="receiver")
    with pytest.raises(SendError) as info:
        await rx.send(outbound())
    assert not info.value.transient
    # Receipts for the transmitter's submit go to the receiver bind of the same account.
    await asyncio.sleep(0.05)
    sent = await tx.send(outbound())
    await events.wait_for(lambda: len(events.receipts) == 1)
    assert events.receipts[0].operator_id == sent.operator_ids[0]


async def test_wrong_password_keeps_retrying(connect: ConnectorFactory) -> None:
    sim = SmscSimulator("127.0.0.1", 0, system_id="u", password="right")
    await sim.start()
    try:
        c = await connect(sim.port, system_id="u", password="wrong", send_wait_s=0.2)
        assert c.binds_up == 0
        with pytest.raises(SendError) as info:
            await c.send(outbound())
        assert info.value.transient
    finally:
        await sim.stop()


async def test_window_keeps_many_outstanding(connect: ConnectorFactory) -> None:
    sim = SmscSimulator("127.0.0.1", 0, latency_ms=300, receipts=False)
    await sim.start()
    try:
        c = await connect(sim.port, window=64)
        assert c.max_in_flight == 64
        results = await asyncio.gather(*(c.send(outbound(message_id=str(i))) for i in range(150)))
        assert len(results) == 150
        assert sim.max_in_flight >= 32  # the peer saw at least 32 unanswered at once
        assert sim.max_in_flight <= 64  # ...and never more than the window
    finally:
        await sim.stop()


async def test_a_small_window_is_a_hard_limit(connect: ConnectorFactory) -> None:
    """An operator's contracted window of 4 means four submits unanswered, never a fifth."""
    sim = SmscSimulator("127.0.0.1", 0, latency_ms=30, receipts=False)
    await sim.start()
    try:
        c = await connect(sim.port, window=4)
        assert c.window == 4 and c.max_in_flight == 4
        texts = ["short"] * 30 + ["x" * 400] * 5  # multi-part sends take one window slot per part
        results = await asyncio.gather(*(c.send(outbound(t, message_id=str(i))) for i, t in enumerate(texts)))
        assert len(results) == 35
        assert sim.max_in_flight == 4  # the window was used, and never exceeded
    finally:
        await sim.stop()


async def test_throttling_is_transient_slows_the_bind_then_succeeds(connect: ConnectorFactory) -> None:
    sim = SmscSimulator("127.0.0.1", 0, tps=40, receipts=False)
    await sim.start()
    try:
        c = await connect(sim.port)
        pacer = c.binds[0].pacer
        outcomes = await asyncio.gather(*(c.send(outbound(message_id=str(i))) for i in range(120)), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, SendError)]
        assert errors and all(e.transient and e.code == "0x00000058" for e in errors)
        assert pacer.rate is not None and pacer.throttle_events >= 1  # the bind slowed itself
        # The dispatcher's retry: transient failures go again, and all get through.
        pending = [str(i) for i, o in enumerate(outcomes) if isinstance(o, SendError)]
        for _ in range(40):
            if not pending:
                break
            res = await asyncio.gather(*(c.send(outbound(message_id=m)) for m in pending), return_exceptions=True)
            pending = [m for m, o in zip(pending, res) if isinstance(o, SendError)]
            await asyncio.sleep(0.1)
        assert not pending
    finally:
        await sim.stop()


async def test_msgqful_and_permanent_errors(sim: SmscSimulator, connect: ConnectorFactory) -> None:
    c = await connect(sim.port)
    with pytest.raises(SendError) as q:
        await c.send(outbound(recipient="254700000007"))
    assert q.value.transient and q.value.code == "0x00000014"
    with pytest.raises(SendError) as r:
        await c.send(outbound(recipient="254700000001"))
    assert not r.value.transient and r.value.state == State.REJECTED and r.value.code == "0x0000000B"


async def test_bind_drop_mid_flight_is_transient_and_rebinds(connect: ConnectorFactory) -> None:
    sim = SmscSimulator("127.0.0.1", 0, latency_ms=2000, receipts=False)
    await sim.start()
    try:
        c = await connect(sim.port, rebind_min_s=0.1)
        tasks = [asyncio.create_task(c.send(outbound(message_id=str(i)))) for i in range(20)]
        await asyncio.sleep(0.2)
        assert sim.in_flight == 20
        for s in list(sim.server.sessions):
            s.abort()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, SendError) and o.transient for o in outcomes)
        sim.latency = 0
        await c.wait_up(timeout=5)
        assert c.binds[0].binds == 2
        assert (await c.send(outbound())).operator_ids
    finally:
        await sim.stop()


async def test_connector_survives_smsc_restart(connect: ConnectorFactory) -> None:
    sim = SmscSimulator("127.0.0.1", 0, receipts=False)
    await sim.start()
    port = sim.port
    c = await connect(port, rebind_min_s=0.1)
    await sim.stop()
    await asyncio.sleep(0.3)
    assert c.binds_up == 0
    sim2 = SmscSimulator("127.0.0.1", port, receipts=False)
    await sim2.start()
    try:
        await c.wait_up(timeout=8)
        assert (await c.send(outbound())).operator_ids
    finally:
        await sim2.stop()


async def test_multiple_binds_share_load(sim: SmscSimulator, connect: ConnectorFactory) -> None:
    sim.latency = 0.05
    c = await connect(sim.port, binds=3)
    assert c.binds_up == 3 and c.max_in_flight == 192
    await asyncio.gather(*(c.send(outbound(message_id=str(i))) for i in range(60)))
    assert len({id(p) for p in sim.submitted}) == 60
    assert len(sim.server.bound_sessions("test")) == 3


LONG_GSM = "Habari! " * 30 + "{braces} and €uro at the edge " * 3
LONG_UCS2 = "Karibu 😀 Привет мир " * 12


@pytest.mark.parametrize("mode", ["udh", "udh16", "payload", "sar"])
@pytest.mark.parametrize(("text", "encoding", "dc"), [(LONG_GSM, "gsm7", 0), (LONG_UCS2, "ucs2", 8)])
async def test_long_messages_reassemble_at_the_peer(sim: SmscSimulator, connect: ConnectorFactory, mode: str, text: str, encoding: str, dc: int) -> None:
    c = await connect(sim.port, long_messages=mode)
    sent = await c.send(outbound(text, encoding=encoding))
    pdus = sim.submitted[-len(sent.operator_ids) :]
    assert all(p.get("data_coding") == dc for p in pdus)
    if mode == "payload":
        assert len(pdus) == 1 and pdus[0].get("short_message") == b""
    else:
        assert len(pdus) > 1
        for p in pdus:
            sm = p.get("short_message")
            body = parse_udh(sm)[1] if mode.startswith("udh") else sm
            if dc == 0:  # septets, one per octet
                assert len(body) <= (152 if mode == "udh16" else 153)
            else:  # UTF-16 units, two octets each
                assert len(body) % 2 == 0 and len(body) <= 2 * (66 if mode == "udh16" else 67)
        if mode.startswith("udh"):
            assert pdus[0].get("esm_class") & 0x40
            assert pdus[0].get("short_message")[1] == (0x08 if mode == "udh16" else 0x00)
    assert reassemble(pdus) == text


async def test_addresses_ton_npi_validity(sim: SmscSimulator, connect: ConnectorFactory) -> None:
    c = await connect(sim.port)
    await c.send(outbound(sender="Ujumbe", recipient="+254700000100", validity_s=3600 * 26 + 61))
    await c.send(outbound(sender="20414"))
    await c.send(outbound(sender="+254711000111"))
    a, b, d = sim.submitted[-3:]
    assert (a.get("source_addr_ton"), a.get("source_addr_npi"), a.get("source_addr")) == (5, 0, "Ujumbe")
    assert (a.get("dest_addr_ton"), a.get("dest_addr_npi"), a.get("destination_addr")) == (1, 1, "254700000100")
    assert a.get("validity_period") == "000001020101000R" == relative_validity(3600 * 26 + 61)
    assert a.get("registered_delivery") == 1
    assert (b.get("source_addr_ton"), b.get("source_addr_npi")) == (0, 1)
    assert (d.get("source_addr_ton"), d.get("source_addr_npi"), d.get("source_addr")) == (1, 1, "254711000111")
    assert b.get("validity_period") == ""


async def test_encodings(sim: SmscSimulator, connect: ConnectorFactory) -> None:
    c = await connect(sim.port, data_coding="latin1")
    await c.send(outbound("Ça va 5€?", encoding="gsm7"))  # € is not Latin-1: stays GSM
    await c.send(outbound("Olé ñ ü Ä"))
    await c.send(outbound("Жизнь", encoding="ucs2"))
    await c.send(outbound("not gsm: Жизнь", encoding="gsm7"))  # mislabelled: sent as UCS-2, not mangled
    p1, p2, p3, p4 = sim.submitted[-4:]
    assert p1.get("data_coding") == 0 and decode_sm(p1.get("short_message"), 0) == "Ça va 5€?"
    assert p2.get("data_coding") == 3 and p2.get("short_message") == "Olé ñ ü Ä".encode("latin-1")
    assert p3.get("data_coding") == 8 and p3.get("short_message") == "Жизнь".encode("utf-16-be")
    assert p4.get("data_coding") == 8


async def test_receipts_arrive_with_mismatched_id_styles(connect: ConnectorFactory, events: Events) -> None:
    sim = SmscSimulator("127.0.0.1", 0, receipt_delay_ms=10, id_style="hex", receipt_id_style="decimal")
    await sim.start()
    try:
        c = await connect(sim.port)
        ok = await c.send(outbound(recipient="254700000100"))
        bad = await c.send(outbound(recipient="254700000002"))
        exp = await c.send(outbound(recipient="254700000003"))
        await c.send(outbound(recipient="254700000006"))  # never gets a receipt
        parts = await c.send(outbound("z" * 200))
        await events.wait_for(lambda: len(events.receipts) >= 5)
        await asyncio.sleep(0.1)
        assert len(events.receipts) == 5
        by_state = {}
        for r in events.receipts:
            by_state.setdefault(r.state, []).append(r.operator_id)
        assert any(ok.operator_ids[0] in id_variants(i) for i in by_state[State.DELIVERED])
        assert any(bad.operator_ids[0] in id_variants(i) for i in by_state[State.UNDELIVERED])
        assert any(exp.operator_ids[0] in id_variants(i) for i in by_state[State.EXPIRED])
        assert len(parts.operator_ids) == 2
        assert all(r.channel == "smpp" for r in events.receipts)
    finally:
        await sim.stop()


async def test_no_receipt_requested(sim: SmscSimulator, connect: ConnectorFactory, events: Events) -> None:
    c = await connect(sim.port)
    await c.send(outbound(want_receipt=False))
    await asyncio.sleep(0.1)
    assert sim.submitted[-1].get("registered_delivery") == 0 and not events.receipts


async def test_receipts_queued_until_bind(connect: ConnectorFactory, events: Events) -> None:
    sim = SmscSimulator("127.0.0.1", 0)
    await sim.start()
    try:
        from ujumbe.channels.smpp.receipts import receipt_pdu

        sim.server.push("test", receipt_pdu("abc", State.DELIVERED, source_addr="1", destination_addr="2", submit_at_ms=0))
        assert sim.server.queued("test") == 1
        await connect(sim.port)
        await events.wait_for(lambda: len(events.receipts) == 1)
        assert events.receipts[0].operator_id == "abc"
    finally:
        await sim.stop()


async def test_mo_single_and_concatenated(sim: SmscSimulator, connect: ConnectorFactory, events: Events) -> None:
    await connect(sim.port)
    sim.inject_mo("254711000222", "20414", "STOP")
    long_text = "Nataka kujua zaidi kuhusu huduma hii. " * 8
    assert sim.inject_mo("254711000222", "20414", long_text) > 1
    emoji = "Asante sana 🙏🏽 " * 10
    assert sim.inject_mo("+254711000333", "20414", emoji) > 1
    await events.wait_for(lambda: len(events.mo) == 3)
    bodies = {m.body for m in events.mo}
    assert bodies == {"STOP", long_text, emoji}
    m = next(m for m in events.mo if m.body == emoji)
    assert (m.sender, m.recipient, m.channel) == ("254711000333", "20414", "smpp")


async def test_mo_udh16_and_sar_out_of_order(sim: SmscSimulator, connect: ConnectorFactory, events: Events) -> None:
    await connect(sim.port)
    base = dict(source_addr="254722000000", destination_addr="20414", data_coding=0)
    sim.last_account = "test"
    # 16-bit reference UDH, parts arriving 2 then 1
    sim.server.push("test", Pdu.make("deliver_sm", esm_class=0x40, short_message=bytes((6, 8, 4, 0x12, 0x34, 2, 2)) + b"world", **base))
    sim.server.push("test", Pdu.make("deliver_sm", esm_class=0x40, short_message=bytes((6, 8, 4, 0x12, 0x34, 2, 1)) + b"hello ", **base))
    # SAR TLVs
    sim.server.push("test", Pdu.make("deliver_sm", short_message=b"part two", tlvs={"sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 2}, **base))
    sim.server.push("test", Pdu.make("deliver_sm", short_message=b"part one, ", tlvs={"sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 1}, **base))
    # message_payload, UCS-2
    sim.server.push("test", Pdu.make("deliver_sm", tlvs={"message_payload": "Привет".encode("utf-16-be")}, **{**base, "data_coding": 8}))
    await events.wait_for(lambda: len(events.mo) == 3)
    assert {m.body for m in events.mo} == {"hello world", "part one, part two", "Привет"}


def test_no_sender_leaves_source_addr_to_the_smsc() -> None:
    from ujumbe.channels.base import Outbound
    from ujumbe.channels.smpp import SmppConnector

    connector = SmppConnector("127.0.0.1", 1, "id", "pw")
    (pdu,) = connector.build_pdus(Outbound("1", "acc", "", "254708400000", "hi", "gsm7", 1))
    assert (pdu.fields["source_addr"], pdu.fields["source_addr_ton"], pdu.fields["source_addr_npi"]) == ("", 0, 0)
