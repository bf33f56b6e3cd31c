"""Receipt parsing (text and TLV), id spellings, and the text we write."""

from __future__ import annotations

import calendar

import pytest

from ujumbe.channels.smpp import pdu as P
from ujumbe.channels.smpp.pdu import Pdu, decode, encode
from ujumbe.channels.smpp.receipts import (
    format_receipt,
    id_variants,
    is_receipt,
    parse_receipt_text,
    receipt_from_pdu,
    receipt_pdu,
)
from ujumbe.core.states import State


def dlr(text: str, **tlvs: object) -> Pdu:
    return Pdu.make("deliver_sm", 1, esm_class=4, short_message=text.encode(), tlvs=tlvs)


def ms(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1000


def test_standard_text() -> None:
    r = receipt_from_pdu(
        dlr("id:0123456789 sub:001 dlvrd:001 submit date:2501021530 done date:2501021531 stat:DELIVRD err:000 text:Hello id:x"),
        "op",
    )
    assert r is not None
    assert (r.operator_id, r.state, r.at, r.channel) == ("0123456789", State.DELIVERED, ms(2025, 1, 2, 15, 31), "op")
    assert r.raw.startswith("id:0123456789")


def test_seconds_case_and_underscores() -> None:
    r = receipt_from_pdu(dlr("ID:ab12 SUB:001 DLVRD:000 SUBMIT_DATE:250102153005 DONE_DATE:250102153107 STAT:undeliv ERR:034 TEXT:x"), "op")
    assert r is not None
    assert (r.operator_id, r.state, r.error_code, r.at) == ("ab12", State.UNDELIVERED, "034", ms(2025, 1, 2, 15, 31, 7))


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("id:1 stat:EXPIRED", State.EXPIRED),
        ("id:1 stat:REJECTD err:002", State.REJECTED),
        ("id:1 stat:DELETED", State.UNDELIVERED),
        ("id:1 stat:ACCEPTD", State.SUBMITTED),
        ("id:1 stat:ENROUTE", State.SUBMITTED),
        ("id:1 stat:UNKNOWN", State.UNDELIVERED),
        ("id:1 stat:DELIVERED", State.DELIVERED),  # non-standard spelling
        ("id:1 stat:FAILED", State.UNDELIVERED),
        ("id:1 dlvrd:001", State.DELIVERED),  # no stat: fall back to dlvrd
        ("id:1 dlvrd:000", State.UNDELIVERED),
        ("id:1", State.SUBMITTED),
    ],
)
def test_states_and_missing_fields(text: str, state: State) -> None:
    r = receipt_from_pdu(dlr(text), "op", now_ms=42)
    assert r is not None and r.state == state and r.at == 42  # no done date -> now


def test_tlvs_win_over_text() -> None:
    p = dlr("id:999 stat:DELIVRD", receipted_message_id="3e7", message_state=5, network_error_code=b"\x03\x00\x22")
    r = receipt_from_pdu(p, "op")
    assert r is not None and r.operator_id == "3e7" and r.state == State.UNDELIVERED and r.error_code == "3:34"


def test_tlv_only_receipt_and_payload() -> None:
    p = Pdu.make("data_sm", 1, esm_class=4, tlvs={"receipted_message_id": "XYZ", "message_state": 2})
    assert is_receipt(p)
    r = receipt_from_pdu(decode(encode(p)), "op")
    assert r is not None and (r.operator_id, r.state) == ("XYZ", State.DELIVERED)
    q = Pdu.make("deliver_sm", 1, esm_class=4, tlvs={"message_payload": b"id:77 stat:EXPIRED"})
    r2 = receipt_from_pdu(q, "op")
    assert r2 is not None and (r2.operator_id, r2.state) == ("77", State.EXPIRED)


def test_not_a_receipt() -> None:
    assert not is_receipt(Pdu.make("deliver_sm", 1, short_message=b"hi"))
    assert is_receipt(Pdu.make("deliver_sm", 1, tlvs={"receipted_message_id": "1"}))
    assert is_receipt(Pdu.make("deliver_sm", 1, esm_class=0x08))
    assert receipt_from_pdu(dlr("no id here stat:DELIVRD"), "op") is None


def test_text_field_may_contain_field_names() -> None:
    f = parse_receipt_text("id:42 stat:DELIVRD err:000 text:id:evil stat:REJECTD")
    assert f["id"] == "42" and f["stat"] == "DELIVRD" and f["text"] == "id:evil stat:REJECTD"


def test_id_variants_match_hex_and_decimal() -> None:
    # The classic mismatch: submit_sm_resp says hex, the receipt says decimal.
    assert "1234567890" in id_variants("499602D2")
    assert "499602d2" in id_variants("1234567890")
    assert id_variants("00ff") >= {"00ff", "ff", "255"}
    assert id_variants("0000012345") >= {"12345", "3039", "74565"}
    assert id_variants("msg-1") == {"msg-1"}
    a, b = "7A3F2C1B", str(0x7A3F2C1B)
    assert id_variants(a) & id_variants(b)


def test_format_receipt_round_trips() -> None:
    text = format_receipt("abc", State.UNDELIVERED, submit_at_ms=ms(2025, 3, 4, 5, 6), done_at_ms=ms(2025, 3, 4, 5, 7), err="001", text="a" * 30)
    assert text == "id:abc sub:001 dlvrd:000 submit date:2503040506 done date:2503040507 stat:UNDELIV err:001 text:" + "a" * 20
    p = receipt_pdu("abc", State.REJECTED, source_addr="2547", destination_addr="Ujumbe", submit_at_ms=0, done_at_ms=ms(2025, 3, 4, 5, 7), err="002")
    r = receipt_from_pdu(decode(encode(p)), "op")
    assert r is not None and (r.operator_id, r.state, r.at) == ("abc", State.REJECTED, ms(2025, 3, 4, 5, 7))
    assert p.tlvs[P.TAG_MESSAGE_STATE] == 8
