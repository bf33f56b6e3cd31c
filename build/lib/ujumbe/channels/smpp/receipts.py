"""SMPP delivery receipts, both ways.

Reading: SMSCs put the outcome in the short_message text (SMPP 3.4 appendix B,
``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:... text:...``),
in the receipted_message_id / message_state TLVs, or in both. The TLVs are
structured, so they win whenever present; the text fills in what they lack.
Real SMSCs vary: field names in any case, dates with or without seconds,
fields missing, ``submit_date`` with an underscore. We accept all of it.

Ids: many SMSCs answer submit_sm with a hex id and report it in decimal in the
receipt (or the reverse). ``id_variants`` gives every spelling so the store can
match whichever one it saved.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

from ujumbe.channels.base import Receipt
from ujumbe.core.ids import id_variants as core_id_variants
from ujumbe.core.states import SMPP_MESSAGE_STATE, SMPP_STAT, STATE_TO_SMPP_STAT, State

from .pdu import (
    DELIVER_SM,
    ESM_DELIVERY_ACK,
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE,
    ESM_TYPE_MASK,
    TAG_MESSAGE_PAYLOAD,
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    Pdu,
)

_TEXT_RE = re.compile(r"\btext:", re.I)
_FIELD_RES: dict[str, re.Pattern[str]] = {
    "id": re.compile(r"\bid:\s*([^\s]+)", re.I),
    "sub": re.compile(r"\bsub:\s*(\S+)", re.I),
    "dlvrd": re.compile(r"\bdlvrd:\s*(\S+)", re.I),
    "submit_date": re.compile(r"\bsubmit[ _]?date:\s*(\d{10,12})", re.I),
    "done_date": re.compile(r"\bdone[ _]?date:\s*(\d{10,12})", re.I),
    "stat": re.compile(r"\bstat:\s*([A-Za-z_]+)", re.I),
    "err": re.compile(r"\berr:\s*(\w+)", re.I),
}
_RECEIPT_TYPES = (ESM_DELIVERY_RECEIPT, ESM_DELIVERY_ACK, ESM_INTERMEDIATE)


def parse_receipt_text(text: str) -> dict[str, str]:
    """Fields of a receipt text by lower-case name (``submit_date``, ``done_date``,
    ``text`` ...); absent fields are absent from the dict."""
    out: dict[str, str] = {}
    m = _TEXT_RE.search(text)
    head = text
    if m:
        out["text"] = text[m.end() :]
        head = text[: m.start()]  # "text:" is free-form and may itself contain "id:"
    for name, rx in _FIELD_RES.items():
        fm = rx.search(head)
        if fm:
            out[name] = fm.group(1)
    return out


def parse_smpp_date(value: str, utc_offset_s: int = 0) -> int | None:
    """``YYMMDDhhmm[ss]`` -> epoch ms. SMSCs do not say their zone; we take UTC
    unless told the offset."""
    try:
        y, mo, d, h, mi = (int(value[i : i + 2]) for i in range(0, 10, 2))
        s = int(value[10:12]) if len(value) >= 12 else 0
        ts = calendar.timegm((2000 + y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    return (ts - utc_offset_s) * 1000


def stat_to_state(stat: str) -> State:
    word = stat.upper()
    known = SMPP_STAT.get(word)
    if known is not None:
        return known
    # Non-standard words seen in the wild: DELIVERED, UNDELIVERABLE, FAILED, REJECTED...
    if word.startswith("UNDEL") or word.startswith("FAIL"):
        return State.UNDELIVERED
    if word.startswith("DELIV"):
        return State.DELIVERED
    if word.startswith("REJ"):
        return State.REJECTED
    if word.startswith("EXP"):
        return State.EXPIRED
    if word.startswith("ACCEP") or word.startswith("ENROUT"):
        return State.SUBMITTED
    return SMPP_STAT["UNKNOWN"]


def is_receipt(pdu: Pdu) -> bool:
    """deliver_sm / data_sm carrying a receipt rather than a mobile-originated message."""
    esm = pdu.fields.get("esm_class", 0)
    return (esm & ESM_TYPE_MASK) in _RECEIPT_TYPES or TAG_RECEIPTED_MESSAGE_ID in pdu.tlvs


def receipt_text(pdu: Pdu) -> str:
    raw = pdu.fields.get("short_message") or pdu.tlvs.get(TAG_MESSAGE_PAYLOAD) or b""
    if isinstance(raw, str):
        return raw
    return bytes(raw).decode("latin-1")


def receipt_from_pdu(
    pdu: Pdu, channel: str, *, now_ms: int | None = None, utc_offset_s: int = 0
) -> Receipt | None:
    """The Receipt a deliver_sm/data_sm carries, or None when it names no message id."""
    text = receipt_text(pdu)
    f = parse_receipt_text(text) if text else {}
    op_id = pdu.tlvs.get(TAG_RECEIPTED_MESSAGE_ID) or f.get("id")
    if isinstance(op_id, bytes):
        op_id = op_id.rstrip(b"\0").decode("latin-1")
    if not op_id:
        return None
    state: State
    tlv_state = pdu.tlvs.get(TAG_MESSAGE_STATE)
    if isinstance(tlv_state, int) and tlv_state in SMPP_MESSAGE_STATE:
        state = SMPP_MESSAGE_STATE[tlv_state]
    elif "stat" in f:
        state = stat_to_state(f["stat"])
    elif f.get("dlvrd", "").isdigit():
        state = State.DELIVERED if int(f["dlvrd"]) > 0 else State.UNDELIVERED
    else:
        state = State.SUBMITTED  # nothing says how it ended: non-final, so harmless
    err = f.get("err", "")
    nec = pdu.tlvs.get(TAG_NETWORK_ERROR_CODE)
    if isinstance(nec, bytes) and len(nec) == 3 and (not err or err.strip("0") == ""):
        code = int.from_bytes(nec[1:], "big")
        if code:
            err = f"{nec[0]}:{code}"  # network type (1 ANSI-136, 2 IS-95, 3 GSM) : code
    at = None
    if "done_date" in f:
        at = parse_smpp_date(f["done_date"], utc_offset_s)
    if at is None:
        at = now_ms if now_ms is not None else int(time.time() * 1000)
    return Receipt(
        channel=channel,
        operator_id=str(op_id),
        state=state,
        at=at,
        error_code=err if err.strip("0") else ("" if state == State.DELIVERED else err),
        raw=text,
    )


def id_variants(op_id: str) -> set[str]:
    """Every spelling of an operator id (hex, decimal, with or without leading
    zeros). The one rule lives in ``ujumbe.core.ids``, which the store matches
    receipts with; this is its set, for callers that compare spellings."""
    return set(core_id_variants(op_id))


def format_smpp_date(epoch_ms: int, seconds: bool = False) -> str:
    t = time.gmtime(epoch_ms // 1000)
    return time.strftime("%y%m%d%H%M%S" if seconds else "%y%m%d%H%M", t)


def format_receipt(
    message_id: str,
    state: State,
    *,
    submit_at_ms: int,
    done_at_ms: int,
    err: str = "000",
    text: str = "",
    sub: int = 1,
    dlvrd: int | None = None,
    seconds: bool = False,
) -> str:
    """The appendix-B receipt text, as most SMSCs write it (10-digit dates by default)."""
    stat = STATE_TO_SMPP_STAT[state][0]
    if dlvrd is None:
        dlvrd = 1 if state == State.DELIVERED else 0
    return (
        f"id:{message_id} sub:{sub:03d} dlvrd:{dlvrd:03d} "
        f"submit date:{format_smpp_date(submit_at_ms, seconds)} "
        f"done date:{format_smpp_date(done_at_ms, seconds)} "
        f"stat:{stat} err:{err} text:{text[:20]}"
    )


def receipt_pdu(
    message_id: str,
    state: State,
    *,
    source_addr: str,
    destination_addr: str,
    submit_at_ms: int,
    done_at_ms: int | None = None,
    err: str = "000",
    text: str = "",
    tlvs: bool = True,
    source_ton: int = 1,
    source_npi: int = 1,
    dest_ton: int = 1,
    dest_npi: int = 1,
) -> Pdu:
    """A deliver_sm receipt (esm_class 0x04). As in the original submit, swapped:
    the receipt's source is the handset, its destination our sender."""
    done = done_at_ms if done_at_ms is not None else int(time.time() * 1000)
    body = format_receipt(
        message_id, state, submit_at_ms=submit_at_ms, done_at_ms=done, err=err, text=text
    )
    t: dict[int, Any] = {}
    if tlvs:
        t[TAG_RECEIPTED_MESSAGE_ID] = message_id
        t[TAG_MESSAGE_STATE] = STATE_TO_SMPP_STAT[state][1]
        if err.isdigit() and int(err):
            t[TAG_NETWORK_ERROR_CODE] = bytes((3,)) + int(err).to_bytes(2, "big")
    return Pdu(
        DELIVER_SM,
        0,
        0,
        {
            "source_addr_ton": source_ton,
            "source_addr_npi": source_npi,
            "source_addr": source_addr,
            "dest_addr_ton": dest_ton,
            "dest_addr_npi": dest_npi,
            "destination_addr": destination_addr,
            "esm_class": ESM_DELIVERY_RECEIPT,
            "data_coding": 0,
            "short_message": body.encode("latin-1", "replace"),
        },
        t,
    )
