"""The voice channel: a message of channel "voice" is one phone call.

``VoiceChannel`` wraps any *caller*: the SIP trunk (channels/sip) or the
call simulator (``sim.py``); both place one call with
``await caller.call(to=, caller=, audio=, stop=, on_event=)`` and give back a
``core.calls.CallResult``. The channel

- renders the text (or loads the uploaded audio) through services/speech at
  send time, not at accept: a campaign of 100,000 keeps no audio in the store;
- hands back ``Submitted`` once the call is placed (it rings, or it ended
  with its final answer), holding one of ``max_calls`` slots for as long as
  the call lasts (``max_in_flight`` is the same number);
- reports the outcome as a ``Receipt`` carrying the CallResult and the SIP
  exchange, so the one receipt path ends the message (``core.calls``' state),
  settles its credits and fires its callback;
- fails over: a call the trunk itself could not take (a 5xx, no final answer
  within Timer B) before anything rang takes the trunk out of routing for a
  cool-down (RFC 3263: try the next server) and, when the routes give another
  trunk that is up, goes there at once instead (not a try spent);
- on shutdown ends every call ``terminated/shutdown`` and reports it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ujumbe.channels.base import Channel, ChannelEvents, Outbound, Receipt, SendError, Submitted
from ujumbe.core import calls
from ujumbe.core.calls import CallResult, VoiceOptions

log = logging.getLogger("ujumbe.voice")

# Reasons that say the trunk, not the callee, failed: the next trunk may take the call.
FAILOVER_REASONS = frozenset({"network_error", "timeout"})
SIP_LOG_MAX = 60  # exchange lines kept per call (a long call's re-INVITEs must not grow it)
BYTES_PER_MS = 16  # PCM16 mono at 8 kHz


class Caller(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def call(self, *, to: str, caller: str, audio: bytes, stop: asyncio.Event | None = None,
                   on_event: Callable[[str, Any], None] | None = None) -> CallResult: ...


@dataclass(slots=True)
class _Live:
    """One call in progress."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    placed: asyncio.Future[CallResult | None] | None = None  # None: it rang; a result: it ended first
    handed_on: asyncio.Future[bool] | None = None  # True: failed over, report nothing
    end_reason: str | None = None  # why we ended it (stopped, shutdown)
    ringing_at: int | None = None
    ringing: str = ""
    codec: str = ""  # the codec the answer chose (PCMA, PCMU)
    log: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class VoiceChannel(Channel):
    kind = "voice"

    def __init__(
        self, caller: Caller, *, name: str, speech: Any = None, max_calls: int | None = None,
        cooldown_s: float = 30.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.caller = caller
        self.speech = speech  # services/speech.Speech: render(text, ...) and load_audio(account, id)
        limit = max_calls or getattr(caller, "max_calls", None) or getattr(getattr(caller, "config", None),
                                                                             "max_calls", None) or 10
        self.max_in_flight = int(limit)
        self.cooldown_s = cooldown_s
        # Set by the router: whether another trunk that is up would take this call.
        self.alternatives: Callable[[Outbound], bool] | None = None
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._live: dict[str, _Live] = {}  # by message id
        self._down_until = 0.0
        self._stopping = False
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}{int(time.time()) % 10**6:x}"
        self.started = False

    # --- what the router and the dispatcher read ---

    @property
    def binds_up(self) -> int:
        """1 while the trunk takes calls; 0 while stopping or cooling down after
        it failed (routing skips it then, as an SMPP connector with no bind)."""
        return 0 if self._stopping or not self.started or time.monotonic() < self._down_until else 1

    @property
    def longest_call_ms(self) -> int | None:
        """How long after it was placed a call of this channel can still be in
        progress (its caller's bound); the dispatcher ends the message's
        validity there, so a call whose process died expires (refunded) on
        every store instead of waiting out the whole validity period."""
        return getattr(self.caller, "longest_call_ms", None)

    @property
    def active_calls(self) -> int:
        return len(self._live)

    async def start(self, events: ChannelEvents) -> None:
        await super().start(events)
        self._stopping = False
        if not self.started and not await self._start_caller():
            # like an SMPP connector that cannot bind: down (skipped by routing), trying again
            self._starter = asyncio.create_task(self._keep_starting(), name=f"{self.name}-start")

    async def _start_caller(self) -> bool:
        try:
            await self.caller.start()
        except Exception as exc:
            log.error("%s: the trunk did not start (%s); trying again", self.name, exc)
            return False
        self.started = True
        return True

    async def _keep_starting(self) -> None:
        delay = 1.0
        while not self._stopping and not self.started:
            await asyncio.sleep(delay)
            if self._stopping or await self._start_caller():
                return
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        await self.drain()
        starter = getattr(self, "_starter", None)
        if starter is not None:
            starter.cancel()
        if self.started:
            await self.caller.stop()
            self.started = False

    async def drain(self, reason: str = "shutdown") -> None:
        """End every call (``terminated/<reason>``) and wait until each is reported."""
        self._stopping = True
        for live in list(self._live.values()):
            live.end_reason = reason
            live.stop.set()
        tasks = [t for live in list(self._live.values()) if (t := live.task) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    def hang_up(self, message_id: str, reason: str = "stopped") -> bool:
        """End one call in progress (a campaign stopped); False when none is."""
        live = self._live.get(str(message_id))
        if live is None:
            return False
        live.end_reason = reason
        live.stop.set()
        return True

    # --- placing a call ---

    async def _audio(self, msg: Outbound) -> bytes:
        vo = VoiceOptions.from_meta(msg.meta.get("voice") if isinstance(msg.meta.get("voice"), dict) else None)
        try:
            if vo.audio_id:
                if self.speech is None:
                    raise SendError("uploaded audio cannot be played here (no speech service)", transient=False,
                                    code="audio_not_found")
                data = self.speech.load_audio(msg.account_id, int(vo.audio_id) if vo.audio_id.isdigit() else vo.audio_id)
                return await data if inspect.isawaitable(data) else data
            if self.speech is None:
                # no text-to-speech here (the simulator on its own): silence as long as the text would take
                return bytes(BYTES_PER_MS * calls.estimated_ms(msg.body, vo.length_factor))
            render = self.speech.render
            kwargs: dict[str, Any] = {"voice": vo.voice, "length_factor": vo.length_factor, "language": vo.language}
            if msg.meta.get("verification"):
                # a one-time code's text is never kept in the speech cache, even
                # when its code is not found to be said digit by digit
                kwargs["keep"] = False
                code = otp_code(msg.body, msg.meta)
                if code:  # said digit by digit, twice (services/speech)
                    kwargs["code"] = code
            if inspect.iscoroutinefunction(render):
                return await render(msg.body, **kwargs)
            return await asyncio.to_thread(render, msg.body, **kwargs)
        except SendError:
            raise
        except Exception as exc:  # services/speech raises Invalid, NotFound (deleted since), ChannelUnavailable
            code = getattr(exc, "code", "") or "audio_failed"
            # no engine here is the server's to fix: tried again; bad or missing audio never will be
            raise SendError(f"the audio could not be made: {getattr(exc, 'message', exc)}"[:300],
                            transient=code == "tts_unavailable", code=code) from None

    async def _send(self, msg: Outbound) -> Submitted:
        if self._stopping or not self.started:
            raise SendError(f"{self.name} is {'stopping' if self._stopping else 'not up'}", transient=True,
                            code="disconnected")
        audio = await self._audio(msg)
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        live = _Live(placed=loop.create_future(), handed_on=loop.create_future())
        op_id = f"{self._prefix}-{next(self._ids)}"
        self._live[msg.message_id] = live
        live.task = asyncio.create_task(self._run(msg, op_id, audio, live), name=f"call-{msg.message_id}")
        assert live.placed is not None and live.handed_on is not None
        try:
            return await self._placed(msg, op_id, live)
        finally:
            if not live.handed_on.done():
                live.handed_on.set_result(False)

    async def _placed(self, msg: Outbound, op_id: str, live: _Live) -> Submitted:
        assert live.placed is not None and live.handed_on is not None
        ended = await asyncio.shield(live.placed)
        if ended is not None and ended.reason in FAILOVER_REASONS and not ended.answered and live.ringing_at is None:
            # The trunk could not take it: when the routes give another trunk that is up, this one
            # leaves routing for a while and the call goes there. The only trunk stays: the call failed.
            before, self._down_until = self._down_until, time.monotonic() + self.cooldown_s
            if self.alternatives is None or not self.alternatives(msg):
                self._down_until = before
            else:
                log.warning("%s: call failed at the trunk (%s %s, %s); out of routing for %.0f s", self.name,
                            ended.sip_status, ended.sip_phrase, ended.reason, self.cooldown_s)
                live.handed_on.set_result(True)
                status = f"{ended.sip_status} {ended.sip_phrase}".strip() if ended.sip_status else ended.reason
                raise SendError(f"{self.name}: {status}; trying the next trunk", transient=True,
                                code="trunk_unavailable")
        live.handed_on.set_result(False)
        return Submitted([op_id])

    async def _run(self, msg: Outbound, op_id: str, audio: bytes, live: _Live) -> None:
        assert live.placed is not None and live.handed_on is not None

        def on_event(name: str, detail: Any = None) -> None:
            if name == "answered" and isinstance(detail, dict):
                live.codec = str(detail.get("codec") or "")
            if name in ("ringing", "early_media", "answered") and live.ringing_at is None:
                live.ringing_at = int(time.time() * 1000)
                live.ringing = _said(name, detail)
            if name in ("ringing", "early_media", "answered") and not live.placed.done():  # type: ignore[union-attr]
                live.placed.set_result(None)  # type: ignore[union-attr]

        def on_exchange(direction: str, summary: str, *rest: Any, **kw: Any) -> None:
            if len(live.log) < SIP_LOG_MAX:
                # a first line (request or status line): credentials live only in headers
                live.log.append({"at": int(time.time() * 1000), "direction": direction, "summary": summary[:500]})

        result: CallResult | None = None
        try:
            kwargs: dict[str, Any] = {"to": msg.recipient, "caller": msg.sender, "audio": audio, "stop": live.stop,
                                      "on_event": on_event}
            if _accepts(self.caller.call, "on_exchange"):
                kwargs["on_exchange"] = on_exchange
            result = await self.caller.call(**kwargs)
        except Exception as exc:  # a bug in the stack must not lose the message: it failed, and says why
            log.exception("%s: call for message %s crashed", self.name, msg.message_id)
            now = int(time.time() * 1000)
            result = CallResult(call_id=op_id, reason="network_error", sip_phrase=f"{type(exc).__name__}: {exc}"[:200],
                                started_at=now, ended_at=now)
        finally:
            self._slots.release()
        if live.end_reason and result.reason == "stopped":
            result.reason = live.end_reason  # we ended it, and why: shutdown vs a stopped campaign
        if live.ringing_at is not None:
            result.detail = {**(result.detail or {}), "ringing_at": str(live.ringing_at), "ringing": live.ringing}
        if live.codec:
            result.detail = {**(result.detail or {}), "codec": live.codec}
        if not live.placed.done():
            live.placed.set_result(result)
        try:
            if await live.handed_on:
                return  # failed over: the next trunk reports this message
            await self._report(call_receipt(self.name, op_id, result, sip_log=live.log))
        finally:
            self._live.pop(msg.message_id, None)

    async def _report(self, receipt: Receipt) -> None:
        # the receipt path returns once it is committed (or parked with its call)
        for attempt in range(3):
            if self.events is None:
                return
            try:
                await self.events.receipt(receipt)
                return
            except RuntimeError:
                log.error("%s: the outcome of call %s could not be recorded (stopping)", self.name, receipt.operator_id)
                return
            except Exception:
                log.exception("%s: recording call %s failed; trying again", self.name, receipt.operator_id)
                await asyncio.sleep(1 + attempt)


def call_receipt(connector: str, operator_id: str, result: CallResult, sip_log: Any = None) -> Receipt:
    """The receipt that ends a call's message: its state, reason (an error
    code unless delivered), the reason's words, the summary and the call's
    facts. The one place a call's final record is made (the channel's calls,
    and the lost calls the embedded server ends at start)."""
    return Receipt(
        connector, operator_id, result.state, result.ended_at or int(time.time() * 1000),
        "" if result.state.value == "delivered" else result.reason, calls.REASON_TEXT.get(result.reason, ""),
        calls.summary(result), call=result, sip_log=sip_log,
    )


def _said(name: str, detail: Any) -> str:
    """The ringing event's words: "180 Ringing", "183 Session Progress (early media)"."""
    if name == "answered":
        return "answered without ringing"
    if isinstance(detail, dict) and detail.get("status"):
        words = f"{detail['status']} {detail.get('phrase') or ''}".strip()
        return f"{words} (early media)" if name == "early_media" else words
    return str(detail or name)[:200]


def otp_code(body: str, meta: dict[str, Any]) -> str | None:
    """The one-time code in a verification call's (unsealed) text: services/
    verifications marks the message with the code's length (``otp_length``),
    never the code; the first run of exactly that many digits is it."""
    length = meta.get("otp_length") if meta.get("verification") else None
    if not isinstance(length, int) or length < 1:
        return None
    found = re.search(rf"(?<![0-9])[0-9]{{{length}}}(?![0-9])", body)
    return found.group(0) if found else None


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
