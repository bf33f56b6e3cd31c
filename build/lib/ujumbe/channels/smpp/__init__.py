"""Ujumbe's own SMPP 3.4 stack: codec, sessions, operator connector, server, simulator."""

from .client import SmppConnector
from .pdu import Pdu, PduError, PduReader, SmppError, decode, encode
from .receipts import format_receipt, id_variants, parse_receipt_text, receipt_from_pdu
from .server import SmppServer
from .session import RequestTimeout, SessionClosed, SmppSession

__all__ = [
    "Pdu",
    "PduError",
    "PduReader",
    "RequestTimeout",
    "SessionClosed",
    "SmppConnector",
    "SmppError",
    "SmppServer",
    "SmppSession",
    "decode",
    "encode",
    "format_receipt",
    "id_variants",
    "parse_receipt_text",
    "receipt_from_pdu",
]
