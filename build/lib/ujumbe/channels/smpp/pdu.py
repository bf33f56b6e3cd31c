"""SMPP 3.4 PDU codec: every PDU, every standard TLV, unknown TLVs kept.

A PDU is one generic ``Pdu`` object (command id, status, sequence, a dict of
mandatory fields, a dict of TLVs) rather than a class per command: one table
drives both directions, so the encoder and decoder can never disagree, and the
hot paths (submit_sm / submit_sm_resp) stay a short loop over ``struct``.

Decoding never raises anything but ``PduError``; the session answers it with a
generic_nack (or the matching ``*_resp`` with an error status) instead of
dropping the connection. ``PduReader`` frames a byte stream that arrives in
arbitrary pieces.
"""

from __future__ import annotations

import struct
from typing import Any, Final

# --- command ids -------------------------------------------------------------

GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
QUERY_SM: Final = 0x00000003
QUERY_SM_RESP: Final = 0x80000003
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
REPLACE_SM: Final = 0x00000007
REPLACE_SM_RESP: Final = 0x80000007
CANCEL_SM: Final = 0x00000008
CANCEL_SM_RESP: Final = 0x80000008
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
SUBMIT_MULTI: Final = 0x00000021
SUBMIT_MULTI_RESP: Final = 0x80000021
ALERT_NOTIFICATION: Final = 0x00000102
DATA_SM: Final = 0x00000103
DATA_SM_RESP: Final = 0x80000103

RESP_BIT: Final = 0x80000000

# --- command_status values (SMPP 3.4 section 5.1.3) --------------------------

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RINVPRTFLG: Final = 0x06
ESME_RINVREGDLVFLG: Final = 0x07
ESME_RSYSERR: Final = 0x08
ESME_RINVSRCADR: Final = 0x0A
ESME_RINVDSTADR: Final = 0x0B
ESME_RINVMSGID: Final = 0x0C
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RCANCELFAIL: Final = 0x11
ESME_RREPLACEFAIL: Final = 0x13
ESME_RMSGQFUL: Final = 0x14
ESME_RINVSERTYP: Final = 0x15
ESME_RINVNUMDESTS: Final = 0x33
ESME_RINVDLNAME: Final = 0x34
ESME_RINVDESTFLAG: Final = 0x40
ESME_RINVSUBREP: Final = 0x42
ESME_RINVESMCLASS: Final = 0x43
ESME_RCNTSUBDL: Final = 0x44
ESME_RSUBMITFAIL: Final = 0x45
ESME_RINVSRCTON: Final = 0x48
ESME_RINVSRCNPI: Final = 0x49
ESME_RINVDSTTON: Final = 0x50
ESME_RINVDSTNPI: Final = 0x51
ESME_RINVSYSTYP: Final = 0x53
ESME_RINVREPFLAG: Final = 0x54
ESME_RINVNUMMSGS: Final = 0x55
ESME_RTHROTTLED: Final = 0x58
ESME_RINVSCHED: Final = 0x61
ESME_RINVEXPIRY: Final = 0x62
ESME_RINVDFTMSGID: Final = 0x63
ESME_RX_T_APPN: Final = 0x64
ESME_RX_P_APPN: Final = 0x65
ESME_RX_R_APPN: Final = 0x66
ESME_RQUERYFAIL: Final = 0x67
ESME_RINVOPTPARSTREAM: Final = 0xC0
ESME_ROPTPARNOTALLWD: Final = 0xC1
ESME_RINVPARLEN: Final = 0xC2
ESME_RMISSINGOPTPARAM: Final = 0xC3
ESME_RINVOPTPARAMVAL: Final = 0xC4
ESME_RDELIVERYFAILURE: Final = 0xFE
ESME_RUNKNOWNERR: Final = 0xFF

STATUS_NAMES: Final[dict[int, str]] = {
    v: k for k, v in globals().items() if k.startswith("ESME_") and isinstance(v, int)
}

# esm_class bits
ESM_UDHI: Final = 0x40
ESM_TYPE_MASK: Final = 0x3C
ESM_DELIVERY_RECEIPT: Final = 0x04
ESM_DELIVERY_ACK: Final = 0x08
ESM_INTERMEDIATE: Final = 0x20

# --- TLVs (section 5.3.2): tag -> (name, kind); kind: int size, "c" C-string, "o" octets

TLV_DEFS: Final[dict[int, tuple[str, int | str]]] = {
    0x0005: ("dest_addr_subunit", 1),
    0x0006: ("dest_network_type", 1),
    0x0007: ("dest_bearer_type", 1),
    0x0008: ("dest_telematics_id", 2),
    0x000D: ("source_addr_subunit", 1),
    0x000E: ("source_network_type", 1),
    0x000F: ("source_bearer_type", 1),
    0x0010: ("source_telematics_id", 2),
    0x0017: ("qos_time_to_live", 4),
    0x0019: ("payload_type", 1),
    0x001D: ("additional_status_info_text", "c"),
    0x001E: ("receipted_message_id", "c"),
    0x0030: ("ms_msg_wait_facilities", 1),
    0x0201: ("privacy_indicator", 1),
    0x0202: ("source_subaddress", "o"),
    0x0203: ("dest_subaddress", "o"),
    0x0204: ("user_message_reference", 2),
    0x0205: ("user_response_code", 1),
    0x020A: ("source_port", 2),
    0x020B: ("destination_port", 2),
    0x020C: ("sar_msg_ref_num", 2),
    0x020D: ("language_indicator", 1),
    0x020E: ("sar_total_segments", 1),
    0x020F: ("sar_segment_seqnum", 1),
    0x0210: ("sc_interface_version", 1),
    0x0302: ("callback_num_pres_ind", 1),
    0x0303: ("callback_num_atag", "o"),
    0x0304: ("number_of_messages", 1),
    0x0381: ("callback_num", "o"),
    0x0420: ("dpf_result", 1),
    0x0421: ("set_dpf", 1),
    0x0422: ("ms_availability_status", 1),
    0x0423: ("network_error_code", "o"),  # 3 octets: type, 2-byte code
    0x0424: ("message_payload", "o"),
    0x0425: ("delivery_failure_reason", 1),
    0x0426: ("more_messages_to_send", 1),
    0x0427: ("message_state", 1),
    0x0501: ("ussd_service_op", 1),
    0x1201: ("display_time", 1),
    0x1203: ("sms_signal", 2),
    0x1204: ("ms_validity", 1),
    0x130C: ("alert_on_message_delivery", "o"),  # zero length
    0x1380: ("its_reply_type", 1),
    0x1383: ("its_session_info", "o"),  # 2 octets, opaque
}
TLV_TAGS: Final[dict[str, int]] = {name: tag for tag, (name, _) in TLV_DEFS.items()}

TAG_RECEIPTED_MESSAGE_ID: Final = 0x001E
TAG_MESSAGE_STATE: Final = 0x0427
TAG_MESSAGE_PAYLOAD: Final = 0x0424
TAG_SAR_MSG_REF_NUM: Final = 0x020C
TAG_SAR_TOTAL_SEGMENTS: Final = 0x020E
TAG_SAR_SEGMENT_SEQNUM: Final = 0x020F
TAG_NETWORK_ERROR_CODE: Final = 0x0423
TAG_USER_MESSAGE_REFERENCE: Final = 0x0204
TAG_SC_INTERFACE_VERSION: Final = 0x0210

# --- mandatory body layouts ----------------------------------------------------
# kind: ("c", max_len incl. NUL) C-string | "B" u8 | "sm" sm_length + short_message
#       | "dests" submit_multi dest list | "unsucc" submit_multi_resp unsuccess list

Field = tuple[str, Any]

_BIND: list[Field] = [
    ("system_id", ("c", 16)),
    ("password", ("c", 9)),
    ("system_type", ("c", 13)),
    ("interface_version", "B"),
    ("addr_ton", "B"),
    ("addr_npi", "B"),
    ("address_range", ("c", 41)),
]
_BIND_RESP: list[Field] = [("system_id", ("c", 16))]
_SM: list[Field] = [
    ("service_type", ("c", 6)),
    ("source_addr_ton", "B"),
    ("source_addr_npi", "B"),
    ("source_addr", ("c", 21)),
    ("dest_addr_ton", "B"),
    ("dest_addr_npi", "B"),
    ("destination_addr", ("c", 21)),
    ("esm_class", "B"),
    ("protocol_id", "B"),
    ("priority_flag", "B"),
    ("schedule_delivery_time", ("c", 17)),
    ("validity_period", ("c", 17)),
    ("registered_delivery", "B"),
    ("replace_if_present_flag", "B"),
    ("data_coding", "B"),
    ("sm_default_msg_id", "B"),
    ("short_message", "sm"),
]
_MSGID: list[Field] = [("message_id", ("c", 65))]

LAYOUTS: Final[dict[int, tuple[str, list[Field], bool]]] = {
    # command_id: (name, mandatory fields, TLVs allowed)
    GENERIC_NACK: ("generic_nack", [], False),
    BIND_RECEIVER: ("bind_receiver", _BIND, False),
    BIND_RECEIVER_RESP: ("bind_receiver_resp", _BIND_RESP, True),
    BIND_TRANSMITTER: ("bind_transmitter", _BIND, False),
    BIND_TRANSMITTER_RESP: ("bind_transmitter_resp", _BIND_RESP, True),
    BIND_TRANSCEIVER: ("bind_transceiver", _BIND, False),
    BIND_TRANSCEIVER_RESP: ("bind_transceiver_resp", _BIND_RESP, True),
    OUTBIND: ("outbind", [("system_id", ("c", 16)), ("password", ("c", 9))], False),
    UNBIND: ("unbind", [], False),
    UNBIND_RESP: ("unbind_resp", [], False),
    ENQUIRE_LINK: ("enquire_link", [], False),
    ENQUIRE_LINK_RESP: ("enquire_link_resp", [], False),
    SUBMIT_SM: ("submit_sm", _SM, True),
    SUBMIT_SM_RESP: ("submit_sm_resp", _MSGID, False),
    DELIVER_SM: ("deliver_sm", _SM, True),
    DELIVER_SM_RESP: ("deliver_sm_resp", _MSGID, False),
    DATA_SM: (
        "data_sm",
        [
            ("service_type", ("c", 6)),
            ("source_addr_ton", "B"),
            ("source_addr_npi", "B"),
            ("source_addr", ("c", 65)),
            ("dest_addr_ton", "B"),
            ("dest_addr_npi", "B"),
            ("destination_addr", ("c", 65)),
            ("esm_class", "B"),
            ("registered_delivery", "B"),
            ("data_coding", "B"),
        ],
        True,
    ),
    DATA_SM_RESP: ("data_sm_resp", _MSGID, True),
    QUERY_SM: (
        "query_sm",
        [
            ("message_id", ("c", 65)),
            ("source_addr_ton", "B"),
            ("source_addr_npi", "B"),
            ("source_addr", ("c", 21)),
        ],
        False,
    ),
    QUERY_SM_RESP: (
        "query_sm_resp",
        [
            ("message_id", ("c", 65)),
            ("final_date", ("c", 17)),
            ("message_state", "B"),
            ("error_code", "B"),
        ],
        False,
    ),
    CANCEL_SM: (
        "cancel_sm",
        [
            ("service_type", ("c", 6)),
            ("message_id", ("c", 65)),
            ("source_addr_ton", "B"),
            ("source_addr_npi", "B"),
            ("source_addr", ("c", 21)),
            ("dest_addr_ton", "B"),
            ("dest_addr_npi", "B"),
            ("destination_addr", ("c", 21)),
        ],
        False,
    ),
    CANCEL_SM_RESP: ("cancel_sm_resp", [], False),
    REPLACE_SM: (
        "replace_sm",
        [
            ("message_id", ("c", 65)),
            ("source_addr_ton", "B"),
            ("source_addr_npi", "B"),
            ("source_addr", ("c", 21)),
            ("schedule_delivery_time", ("c", 17)),
            ("validity_period", ("c", 17)),
            ("registered_delivery", "B"),
            ("sm_default_msg_id", "B"),
            ("short_message", "sm"),
        ],
        False,
    ),
    REPLACE_SM_RESP: ("replace_sm_resp", [], False),
    ALERT_NOTIFICATION: (
        "alert_notification",
        [
            ("source_addr_ton", "B"),
            ("source_addr_npi", "B"),
            ("source_addr", ("c", 65)),
            ("esme_addr_ton", "B"),
            ("esme_addr_npi", "B"),
            ("esme_addr", ("c", 65)),
        ],
        True,
    ),
    SUBMIT_MULTI: (
        "submit_multi",
        [
            ("service_type", ("c", 6)),
            ("source_addr_ton", "B"),
            ("source_addr_npi", "B"),
            ("source_addr", ("c", 21)),
            ("dest_addresses", "dests"),
            ("esm_class", "B"),
            ("protocol_id", "B"),
            ("priority_flag", "B"),
            ("schedule_delivery_time", ("c", 17)),
            ("validity_period", ("c", 17)),
            ("registered_delivery", "B"),
            ("replace_if_present_flag", "B"),
            ("data_coding", "B"),
            ("sm_default_msg_id", "B"),
            ("short_message", "sm"),
        ],
        True,
    ),
    SUBMIT_MULTI_RESP: (
        "submit_multi_resp",
        [("message_id", ("c", 65)), ("unsuccess_smes", "unsucc")],
        False,
    ),
}
COMMAND_IDS: Final[dict[str, int]] = {name: cid for cid, (name, _, _) in LAYOUTS.items()}

HEADER = struct.Struct(">IIII")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_TLV_HEAD = struct.Struct(">HH")
MAX_PDU_LEN: Final = 64 * 1024  # far above any sane PDU; larger means a broken stream
MAX_SEQUENCE: Final = 0x7FFFFFFF


class SmppError(Exception):
    """A request refused with an SMPP command_status."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = status
        super().__init__(message or status_name(status))


class PduError(SmppError):
    """Bytes that are not a valid PDU. ``fatal`` means framing is lost: close the link."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        command_id: int = 0,
        sequence: int = 0,
        fatal: bool = False,
    ) -> None:
        super().__init__(status, message)
        self.command_id = command_id
        self.sequence = sequence
        self.fatal = fatal


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"status 0x{status:08X}")


def _default(kind: Any) -> Any:
    if kind == "B":
        return 0
    if kind == "sm":
        return b""
    if kind in ("dests", "unsucc"):
        return []
    return ""


class Pdu:
    """One PDU. ``fields`` holds the mandatory parameters by their spec names
    (C-strings as str, integers as int, short_message as bytes); ``tlvs`` maps
    tag -> value (int for integer TLVs, str for C-string TLVs, bytes otherwise)."""

    __slots__ = ("command_id", "status", "sequence", "fields", "tlvs")

    def __init__(
        self,
        command_id: int,
        sequence: int = 0,
        status: int = 0,
        fields: dict[str, Any] | None = None,
        tlvs: dict[int, Any] | None = None,
    ) -> None:
        self.command_id = command_id
        self.sequence = sequence
        self.status = status
        self.fields = fields if fields is not None else {}
        self.tlvs = tlvs if tlvs is not None else {}

    @classmethod
    def make(
        cls,
        command: str | int,
        sequence: int = 0,
        status: int = 0,
        tlvs: dict[int | str, Any] | None = None,
        **fields: Any,
    ) -> Pdu:
        """Build by name: ``Pdu.make("submit_sm", destination_addr="2547...")``;
        TLVs may be keyed by tag or by spec name."""
        cid = command if isinstance(command, int) else COMMAND_IDS[command]
        t: dict[int, Any] = {}
        for k, v in (tlvs or {}).items():
            t[TLV_TAGS[k] if isinstance(k, str) else k] = v
        return cls(cid, sequence, status, fields, t)

    @property
    def name(self) -> str:
        layout = LAYOUTS.get(self.command_id)
        return layout[0] if layout else f"0x{self.command_id:08X}"

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESP_BIT)

    def get(self, name: str) -> Any:
        """A mandatory field, or its zero value when absent (error responses may have no body)."""
        if name in self.fields:
            return self.fields[name]
        layout = LAYOUTS.get(self.command_id)
        if layout:
            for fname, kind in layout[1]:
                if fname == name:
                    return _default(kind)
        raise KeyError(name)

    def tlv(self, tag: int | str, default: Any = None) -> Any:
        return self.tlvs.get(TLV_TAGS[tag] if isinstance(tag, str) else tag, default)

    def response(self, status: int = ESME_ROK, **fields: Any) -> Pdu:
        """The ``*_resp`` answering this request (generic_nack for unknown commands)."""
        cid = self.command_id | RESP_BIT
        if cid not in LAYOUTS:
            cid = GENERIC_NACK
        return Pdu(cid, self.sequence, status, fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pdu):
            return NotImplemented
        return (
            self.command_id == other.command_id
            and self.sequence == other.sequence
            and self.status == other.status
            and _full(self) == _full(other)
            and self.tlvs == other.tlvs
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        tl = {TLV_DEFS.get(k, (f"0x{k:04X}",))[0]: v for k, v in self.tlvs.items()}
        return (
            f"Pdu({self.name}, seq={self.sequence}, status=0x{self.status:X}, "
            f"fields={self.fields!r}, tlvs={tl!r})"
        )


def _full(p: Pdu) -> dict[str, Any]:
    layout = LAYOUTS.get(p.command_id)
    if not layout:
        return p.fields
    return {name: p.fields.get(name, _default(kind)) for name, kind in layout[1]}


# --- encoding -------------------------------------------------------------------


def _cstr(value: str | bytes, max_len: int, name: str) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else value
    if len(raw) >= max_len:
        raise PduError(ESME_RINVPARLEN, f"{name} is {len(raw)} bytes; at most {max_len - 1}")
    return raw + b"\0"


def _encode_tlv(tag: int, value: Any) -> bytes:
    kind = TLV_DEFS.get(tag, ("", "o"))[1]
    if isinstance(value, int):
        size = kind if isinstance(kind, int) else 1
        raw = value.to_bytes(size, "big")
    elif isinstance(value, str):
        raw = value.encode("latin-1") + (b"\0" if kind == "c" else b"")
    else:
        raw = bytes(value)
    return _TLV_HEAD.pack(tag, len(raw)) + raw


def encode(pdu: Pdu) -> bytes:
    """Wire bytes for ``pdu``. Raises PduError for values that do not fit."""
    layout = LAYOUTS.get(pdu.command_id)
    parts: list[bytes] = []
    fields = pdu.fields
    # A non-OK response may omit its body (3.4 section 4.1.x: "body not returned").
    if layout and (fields or pdu.status == ESME_ROK):
        for name, kind in layout[1]:
            v = fields.get(name)
            if kind == "B":
                parts.append(bytes(((v or 0) & 0xFF,)))
            elif kind == "sm":
                sm = v or b""
                if len(sm) > 254:
                    raise PduError(ESME_RINVMSGLEN, "short_message over 254 octets; use message_payload")
                parts.append(bytes((len(sm),)))
                parts.append(sm)
            elif kind == "dests":
                dests = v or []
                parts.append(bytes((len(dests),)))
                for d in dests:
                    if "dl_name" in d:
                        parts.append(b"\x02" + _cstr(d["dl_name"], 21, "dl_name"))
                    else:
                        parts.append(
                            bytes((1, d.get("dest_addr_ton", 0), d.get("dest_addr_npi", 0)))
                            + _cstr(d.get("destination_addr", ""), 21, "destination_addr")
                        )
            elif kind == "unsucc":
                rows = v or []
                parts.append(bytes((len(rows),)))
                for d in rows:
                    parts.append(
                        bytes((d.get("dest_addr_ton", 0), d.get("dest_addr_npi", 0)))
                        + _cstr(d.get("destination_addr", ""), 21, "destination_addr")
                        + _U32.pack(d.get("error_status_code", 0))
                    )
            else:
                parts.append(_cstr(v or "", kind[1], name))
    for tag, value in pdu.tlvs.items():
        parts.append(_encode_tlv(tag, value))
    body = b"".join(parts)
    return HEADER.pack(16 + len(body), pdu.command_id, pdu.status, pdu.sequence) + body


# --- decoding -------------------------------------------------------------------


def _decode_tlvs(data: bytes, off: int, end: int, cid: int, seq: int) -> dict[int, Any]:
    tlvs: dict[int, Any] = {}
    while off < end:
        if off + 4 > end:
            raise PduError(ESME_RINVOPTPARSTREAM, "truncated TLV header", command_id=cid, sequence=seq)
        tag, length = _TLV_HEAD.unpack_from(data, off)
        off += 4
        if off + length > end:
            raise PduError(ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} overruns the PDU", command_id=cid, sequence=seq)
        raw = data[off : off + length]
        off += length
        kind = TLV_DEFS.get(tag, ("", "o"))[1]
        if isinstance(kind, int) and length == kind:
            tlvs[tag] = int.from_bytes(raw, "big")
        elif kind == "c":
            # Some SMSCs omit the NUL; accept both.
            tlvs[tag] = raw.rstrip(b"\0").decode("latin-1")
        else:
            tlvs[tag] = raw  # unknown or malformed-size TLVs are kept verbatim
    return tlvs


def decode_body(cid: int, status: int, seq: int, data: bytes, off: int, end: int) -> Pdu:
    layout = LAYOUTS.get(cid)
    if layout is None:
        raise PduError(ESME_RINVCMDID, f"unknown command_id 0x{cid:08X}", command_id=cid, sequence=seq)
    fields: dict[str, Any] = {}
    tlvs: dict[int, Any] = {}
    if off == end and layout[1] and not cid & RESP_BIT:
        raise PduError(ESME_RINVCMDLEN, f"empty {layout[0]} body", command_id=cid, sequence=seq)
    if off < end:
        index = data.index
        try:
            for name, kind in layout[1]:
                if kind == "B":
                    if off >= end:
                        raise IndexError
                    fields[name] = data[off]
                    off += 1
                elif kind == "sm":
                    n = data[off]
                    off += 1
                    if off + n > end:
                        raise PduError(ESME_RINVMSGLEN, "sm_length overruns the PDU", command_id=cid, sequence=seq)
                    fields[name] = data[off : off + n]
                    off += n
                elif kind == "dests":
                    count = data[off]
                    off += 1
                    dests: list[dict[str, Any]] = []
                    for _ in range(count):
                        flag = data[off]
                        off += 1
                        if flag == 1:
                            ton, npi = data[off], data[off + 1]
                            nul = index(b"\0", off + 2, end)
                            dests.append(
                                {
                                    "dest_addr_ton": ton,
                                    "dest_addr_npi": npi,
                                    "destination_addr": data[off + 2 : nul].decode("latin-1"),
                                }
                            )
                        elif flag == 2:
                            nul = index(b"\0", off, end)
                            dests.append({"dl_name": data[off:nul].decode("latin-1")})
                        else:
                            raise PduError(ESME_RINVDESTFLAG, "bad dest_flag", command_id=cid, sequence=seq)
                        off = nul + 1
                    fields[name] = dests
                elif kind == "unsucc":
                    count = data[off]
                    off += 1
                    rows: list[dict[str, Any]] = []
                    for _ in range(count):
                        ton, npi = data[off], data[off + 1]
                        nul = index(b"\0", off + 2, end)
                        if nul + 5 > end:
                            raise IndexError
                        rows.append(
                            {
                                "dest_addr_ton": ton,
                                "dest_addr_npi": npi,
                                "destination_addr": data[off + 2 : nul].decode("latin-1"),
                                "error_status_code": _U32.unpack_from(data, nul + 1)[0],
                            }
                        )
                        off = nul + 5
                    fields[name] = rows
                else:
                    nul = index(b"\0", off, end)
                    fields[name] = data[off:nul].decode("latin-1")
                    off = nul + 1
        except (ValueError, IndexError):  # missing NUL / ran off the end
            if cid & RESP_BIT and status != ESME_ROK:
                off = end  # error responses often carry a truncated body; the status is what matters
            else:
                raise PduError(ESME_RINVCMDLEN, f"truncated {layout[0]} body", command_id=cid, sequence=seq) from None
        if off > end:
            raise PduError(ESME_RINVCMDLEN, f"truncated {layout[0]} body", command_id=cid, sequence=seq)
        if off < end:
            # Decoded even where the spec allows no TLVs: SMSCs put them on
            # e.g. submit_sm_resp, and keeping them beats rejecting the PDU.
            tlvs = _decode_tlvs(data, off, end, cid, seq)
    return Pdu(cid, seq, status, fields, tlvs)


def decode(data: bytes) -> Pdu:
    """Decode exactly one complete PDU."""
    if len(data) < 16:
        raise PduError(ESME_RINVCMDLEN, "shorter than a PDU header", fatal=True)
    length, cid, status, seq = HEADER.unpack_from(data, 0)
    if length != len(data):
        raise PduError(ESME_RINVCMDLEN, f"command_length {length} but {len(data)} bytes", command_id=cid, sequence=seq)
    return decode_body(cid, status, seq, data, 16, length)


class PduReader:
    """Frames a byte stream into PDUs across arbitrary read boundaries.

    ``feed`` appends bytes; ``next`` returns the next complete PDU or None.
    A bad frame is consumed before its PduError is raised, so the caller can
    nack it and keep reading; a fatal PduError (impossible command_length)
    means the stream cannot be resynchronised.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            # Compact lazily: only once per feed, never per PDU.
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> Pdu | None:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 16:
            return None
        length, cid, status, seq = HEADER.unpack_from(buf, pos)
        if length < 16 or length > MAX_PDU_LEN:
            self._buf = bytearray()
            self._pos = 0
            raise PduError(ESME_RINVCMDLEN, f"impossible command_length {length}", command_id=cid, sequence=seq, fatal=True)
        if avail < length:
            return None
        self._pos = pos + length
        # bytes() copy of one PDU keeps decoding on immutable data (faster index/slices).
        frame = bytes(buf[pos : pos + length])
        return decode_body(cid, status, seq, frame, 16, length)

    def __iter__(self) -> PduReader:
        return self

    def __next__(self) -> Pdu:
        pdu = self.next()
        if pdu is None:
            raise StopIteration
        return pdu
