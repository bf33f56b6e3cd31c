"""The one interface every channel plugs into: SMPP, SMTP, SIP and the simulator.

A channel takes one outbound message and either hands back the operator's ids
for its parts or raises ``SendError``. Receipts and inbound messages arrive
later, on the channel's own schedule, through ``ChannelEvents``. Timing,
logging and error classification live once, here in the base class, so each
channel implements only ``_send``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from ujumbe.core.states import State

log = logging.getLogger("ujumbe.channels")


@dataclass(slots=True)
class Outbound:
    message_id: str
    account_id: str
    sender: str
    recipient: str  # E.164 digits without '+', or an email address
    body: str
    encoding: str  # "gsm7" | "ucs2"
    parts: int
    validity_s: int | None = None
    want_receipt: bool = True
    network: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. link_id, service_id, subject


@dataclass(slots=True)
class Submitted:
    """The operator accepted the message: one id per part, in order."""

    operator_ids: list[str]


class SendError(Exception):
    """The channel could not hand the message over.

    ``transient`` failures (throttled, queue full, connection lost) are
    retried with backoff; permanent ones end the message as ``state``.
    """

    def __init__(
        self, reason: str, *, transient: bool, code: str = "", state: State = State.FAILED
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.code = code
        self.state = state


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Receipt:
    channel: str
    operator_id: str
    state: State
    # epoch ms: the operator's own time for the outcome (an SMPP receipt's done
    # date) or, when it gives none, ``received_at``. Data only: SMSC clocks
    # differ from ours, so events are timed by when Ujumbe records them.
    at: int
    error_code: str = ""
    reason: str = ""  # normalized reason word, e.g. "absent_subscriber"
    raw: str = ""
    # epoch ms, when Ujumbe received it: a receipt belongs only to a part sent before
    received_at: int = field(default_factory=_now_ms)
    # a voice call's facts (core.calls.CallResult) and its SIP exchange log,
    # kept on the message with the receipt that ends it
    call: Any = None
    sip_log: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Inbound:
    channel: str
    sender: str  # the subscriber's number, E.164 digits
    recipient: str  # our short code or long number
    body: str
    at: int  # epoch milliseconds
    network: str | None = None
    link_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ChannelEvents(Protocol):
    async def receipt(self, receipt: Receipt) -> None: ...

    async def inbound(self, message: Inbound) -> None: ...


class Channel(ABC):
    """Base of all channels. Subclasses implement ``_send``; callers call ``send``."""

    name: str = "channel"
    kind: str = "sms"  # "sms" | "email" | "voice"
    # How many sends the dispatcher may keep in flight on this channel at once.
    max_in_flight: int = 64

    def __init__(self) -> None:
        self.events: ChannelEvents | None = None

    async def start(self, events: ChannelEvents) -> None:
        self.events = events

    async def stop(self) -> None:
        return None

    async def send(self, msg: Outbound) -> Submitted:
        started = time.perf_counter()
        try:
            result = await self._send(msg)
        except SendError as exc:
            log.info(
                "%s send failed message=%s transient=%s reason=%s",
                self.name,
                msg.message_id,
                exc.transient,
                exc.reason,
            )
            raise
        except Exception as exc:  # a bug or an unexpected peer: retry rather than lose it
            log.exception("%s send crashed message=%s", self.name, msg.message_id)
            raise SendError(f"{type(exc).__name__}: {exc}", transient=True) from exc
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s sent message=%s in %.1f ms",
                self.name,
                msg.message_id,
                (time.perf_counter() - started) * 1000,
            )
        return result

    @abstractmethod
    async def _send(self, msg: Outbound) -> Submitted: ...
