"""Codec: every PDU round-trips, TLVs by tag, garbage and partial frames."""

from __future__ import annotations

import asyncio
import struct

import pytest

from ujumbe.channels.smpp import pdu as P
from ujumbe.channels.smpp.pdu import Pdu, PduError, PduReader, decode, encode

SM = dict(
    service_type="CMT",
    source_addr_ton=5,
    source_addr_npi=0,
    source_addr="Ujumbe",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="254700000001",
    esm_class=0x40,
    protocol_id=0,
    priority_flag=1,
    schedule_delivery_time="",
    validity_period="000001000000000R",
    registered_delivery=1,
    replace_if_present_flag=0,
    data_coding=8,
    sm_default_msg_id=0,
    short_message=b"\x05\x00\x03\x01\x02\x01" + "héllo".encode("utf-16-be"),
)
BIND = dict(system_id="sys", password="pw", system_type="VMA", interface_version=0x34, addr_ton=1, addr_npi=1, address_range="^2547")

SAMPLES: dict[str, dict] = {
    "generic_nack": {},
    "bind_receiver": BIND,
    "bind_transmitter": BIND,
    "bind_transceiver": BIND,
    "bind_receiver_resp": {"system_id": "smsc"},
    "bind_transmitter_resp": {"system_id": "smsc"},
    "bind_transceiver_resp": {"system_id": "smsc"},
    "outbind": {"system_id": "smsc", "password": "pw"},
    "unbind": {},
    "unbind_resp": {},
    "enquire_link": {},
    "enquire_link_resp": {},
    "submit_sm": SM,
    "submit_sm_resp": {"message_id": "a1b2c3"},
    "deliver_sm": {**SM, "esm_class": 4},
    "deliver_sm_resp": {"message_id": ""},
    "data_sm": {k: SM[k] for k in ("service_type", "source_addr_ton", "source_addr_npi", "source_addr", "dest_addr_ton", "dest_addr_npi", "destination_addr", "esm_class", "registered_delivery", "data_coding")},
    "data_sm_resp": {"message_id": "77"},
    "query_sm": {"message_id": "77", "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "2547"},
    "query_sm_resp": {"message_id": "77", "final_date": "2501011200000+12", "message_state": 2, "error_code": 0},
    "cancel_sm": {"service_type": "", "message_id": "77", "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "2547", "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": "2548"},
    "cancel_sm_resp": {},
    "replace_sm": {"message_id": "77", "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "2547", "schedule_delivery_time": "", "validity_period": "", "registered_delivery": 1, "sm_default_msg_id": 0, "short_message": b"new"},
    "replace_sm_resp": {},
    "alert_notification": {"source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "2547", "esme_addr_ton": 1, "esme_addr_npi": 1, "esme_addr": "20414"},
    "submit_multi": {
        **{k: v for k, v in SM.items() if k not in ("dest_addr_ton", "dest_addr_npi", "destination_addr")},
        "dest_addresses": [{"dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": "2547"}, {"dl_name": "friends"}],
    },
    "submit_multi_resp": {"message_id": "9", "unsuccess_smes": [{"dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": "2547", "error_status_code": 0x0B}]},
}


def test_every_command_has_a_sample() -> None:
    assert set(SAMPLES) == set(P.COMMAND_IDS)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(name: str) -> None:
    p = Pdu.make(name, 0x7FFFFFFF, **SAMPLES[name])
    wire = encode(p)
    assert struct.unpack(">I", wire[:4])[0] == len(wire)
    back = decode(wire)
    assert back == p
    assert back.name == name
    assert encode(back) == wire


def test_all_standard_tlvs_round_trip_and_unknown_kept() -> None:
    tlvs: dict[int, object] = {}
    for tag, (_, kind) in P.TLV_DEFS.items():
        if isinstance(kind, int):
            tlvs[tag] = (1 << (8 * kind)) - 2
        elif kind == "c":
            tlvs[tag] = "abc123"
        else:
            tlvs[tag] = b"\x03\x00\x01" if tag == P.TAG_NETWORK_ERROR_CODE else b"payload"
    tlvs[0x1401] = b"\x01\x02"  # vendor-specific
    p = Pdu(P.SUBMIT_SM, 3, 0, dict(SM), tlvs)
    back = decode(encode(p))
    assert back.tlvs == tlvs
    assert back.tlv("receipted_message_id") == "abc123"
    assert back.tlv(P.TAG_MESSAGE_STATE) == 254


def test_tlv_by_name_and_lenient_forms() -> None:
    p = Pdu.make("deliver_sm", 1, tlvs={"receipted_message_id": "ff01", "message_state": 2, "sar_msg_ref_num": 513})
    wire = encode(p)
    assert b"\x00\x1e\x00\x05ff01\x00" in wire  # C-string TLV carries its NUL
    assert b"\x02\x0c\x00\x02\x02\x01" in wire
    # An SMSC that leaves the NUL off, and an integer TLV of the wrong size, still decode.
    body = wire[16:].replace(b"\x00\x1e\x00\x05ff01\x00", b"\x00\x1e\x00\x04ff01") + b"\x04\x27\x00\x02\x00\x02"
    hacked = struct.pack(">IIII", 16 + len(body), P.DELIVER_SM, 0, 1) + body
    back = decode(hacked)
    assert back.tlvs[P.TAG_RECEIPTED_MESSAGE_ID] == "ff01"
    assert back.tlvs[P.TAG_MESSAGE_STATE] == b"\x00\x02"


def test_error_response_without_body() -> None:
    wire = struct.pack(">IIII", 16, P.SUBMIT_SM_RESP, P.ESME_RTHROTTLED, 9)
    p = decode(wire)
    assert p.status == P.ESME_RTHROTTLED and p.get("message_id") == ""
    assert encode(Pdu(P.BIND_TRANSCEIVER_RESP, 2, P.ESME_RBINDFAIL)) == struct.pack(">IIII", 16, P.BIND_TRANSCEIVER_RESP, P.ESME_RBINDFAIL, 2)


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (struct.pack(">IIII", 16, 0x00000077, 0, 5), P.ESME_RINVCMDID),
        (struct.pack(">IIII", 20, P.SUBMIT_SM, 0, 5) + b"abcd", P.ESME_RINVCMDLEN),  # no NULs
        (struct.pack(">IIII", 16, P.SUBMIT_SM, 0, 5), P.ESME_RINVCMDLEN),  # empty body
        (encode(Pdu.make("submit_sm", 5, **SM))[:-3], P.ESME_RINVCMDLEN),  # length field lies
    ],
)
def test_garbage_raises_typed_error(wire: bytes, status: int) -> None:
    with pytest.raises(PduError) as info:
        decode(wire)
    assert info.value.status == status


def test_sm_length_overrun_and_bad_tlv() -> None:
    good = encode(Pdu.make("submit_sm", 5, **SM))
    i = good.index(SM["short_message"]) - 1
    bad = bytearray(good)
    bad[i] = 200
    with pytest.raises(PduError) as e1:
        decode(bytes(bad))
    assert e1.value.status == P.ESME_RINVMSGLEN and e1.value.sequence == 5
    tlv_bad = good + b"\x04\x24\x00\x09ab"
    tlv_bad = struct.pack(">I", len(tlv_bad)) + tlv_bad[4:]
    with pytest.raises(PduError) as e2:
        decode(tlv_bad)
    assert e2.value.status == P.ESME_RINVOPTPARSTREAM


def test_encode_refuses_oversized_fields() -> None:
    with pytest.raises(PduError):
        encode(Pdu.make("submit_sm", 1, destination_addr="1" * 21))
    with pytest.raises(PduError):
        encode(Pdu.make("submit_sm", 1, short_message=b"x" * 255))


def test_reader_handles_partial_and_coalesced_frames() -> None:
    pdus = [Pdu.make("submit_sm", i, **SM) for i in range(1, 6)] + [Pdu.make("enquire_link", 9)]
    stream = b"".join(encode(p) for p in pdus)
    r = PduReader()
    got: list[Pdu] = []
    for b in stream:  # one byte at a time
        r.feed(bytes((b,)))
        got.extend(r)
    assert got == pdus
    r2 = PduReader()
    r2.feed(stream + stream[:7])
    assert list(r2) == pdus
    r2.feed(stream[7:])
    assert list(r2) == pdus


def test_reader_skips_bad_frame_and_continues() -> None:
    r = PduReader()
    r.feed(struct.pack(">IIII", 16, 0x77, 0, 4) + encode(Pdu.make("enquire_link", 5)))
    with pytest.raises(PduError) as info:
        r.next()
    assert not info.value.fatal and info.value.sequence == 4
    assert r.next() == Pdu.make("enquire_link", 5)


def test_reader_fatal_on_impossible_length() -> None:
    r = PduReader()
    r.feed(struct.pack(">IIII", 8, 4, 0, 1))
    with pytest.raises(PduError) as info:
        r.next()
    assert info.value.fatal


async def _raw(port: int, data: bytes, expect: int = 1) -> tuple[list[Pdu], bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    r = PduReader()
    out: list[Pdu] = []
    closed = False
    try:
        while len(out) < expect:
            chunk = await asyncio.wait_for(reader.read(4096), 2)
            if not chunk:
                closed = True
                break
            r.feed(chunk)
            out.extend(r)
        if not closed:
            try:
                closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
            except TimeoutError:
                closed = False
    finally:
        writer.close()
    return out, closed


async def test_session_nacks_garbage_and_survives(sim) -> None:  # type: ignore[no-untyped-def]
    data = struct.pack(">IIII", 16, 0x77, 0, 11) + encode(Pdu.make("enquire_link", 12))
    got, closed = await _raw(sim.port, data, expect=2)
    assert got[0].command_id == P.GENERIC_NACK and got[0].status == P.ESME_RINVCMDID and got[0].sequence == 11
    assert got[1].command_id == P.ENQUIRE_LINK_RESP and got[1].sequence == 12
    assert not closed


async def test_session_nacks_broken_framing_and_closes(sim) -> None:  # type: ignore[no-untyped-def]
    got, closed = await _raw(sim.port, struct.pack(">IIII", 3, 4, 0, 1) + b"junkjunk")
    assert got[0].command_id == P.GENERIC_NACK and got[0].status == P.ESME_RINVCMDLEN
    assert closed


async def test_unbound_submit_is_refused(sim) -> None:  # type: ignore[no-untyped-def]
    got, _ = await _raw(sim.port, encode(Pdu.make("submit_sm", 3, **SM)))
    assert got[0].command_id == P.SUBMIT_SM_RESP and got[0].status == P.ESME_RINVBNDSTS
