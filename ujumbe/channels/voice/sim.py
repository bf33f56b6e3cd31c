"""The built-in call simulator: a phone network in a box for the embedded default.

It stands where the SIP trunk would (``VoiceChannel(CallSimulator())``) and
answers by the number's last digit, with the figures a real call would show
(ring time, duration, playback); ``speed`` scales the waiting (tests run at
0.01), never the figures reported:

| number ends in | outcome | reason | SIP |
|---|---|---|---|
| ...0 | completed | played_to_end | rings 2.5 s, 200 OK, plays the whole audio, we hang up |
| ...1 | hungup | callee_hangup | rings 2.5 s, 200 OK, the callee hangs up after 3 s (or at half the audio, if shorter) |
| ...2 | unanswered | busy | 486 Busy Here after 0.3 s |
| ...3 | unanswered | no_answer | rings until the ring timeout (30 s), our CANCEL, 487 |
| ...4 | failed | bad_number | 404 Not Found after 0.2 s |
| ...5 | unanswered | declined | rings 4 s, 603 Decline |
| ...6 | failed | network_error | 503 Service Unavailable after 0.1 s |
| anything else | completed | played_to_end | as ...0 |
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from ujumbe.core.calls import LOST_GRACE_MS, CallResult
from ujumbe.core.speech import MAX_AUDIO_SECONDS

BYTES_PER_MS = 16  # PCM16 mono at 8 kHz
RING_MS = 2500
HANGUP_AFTER_MS = 3000


def _now() -> int:
    return int(time.time() * 1000)


class CallSimulator:
    """A caller (see channels/voice ``Caller``) that places no real call."""

    def __init__(self, *, speed: float = 1.0, max_calls: int = 100, ring_timeout_s: float = 30.0) -> None:
        self.speed = max(speed, 0.0)
        self.max_calls = max_calls
        self.ring_timeout_ms = int(ring_timeout_s * 1000)
        self.placed: list[dict[str, Any]] = []  # what was "dialled", for tests and demos

    @property
    def longest_call_ms(self) -> int:
        """From placed to ended, at most: ringing until the timeout, then the
        longest audio (scaled like every wait); past it the call is lost."""
        return max(5000, int((self.ring_timeout_ms + MAX_AUDIO_SECONDS * 1000 + LOST_GRACE_MS) * self.speed))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def _wait(self, ms: int, stop: asyncio.Event | None) -> bool:
        """Wait ``ms`` (scaled by speed); True when ``stop`` ended it first."""
        if stop is None:
            await asyncio.sleep(ms * self.speed / 1000)
            return False
        try:
            await asyncio.wait_for(stop.wait(), ms * self.speed / 1000)
            return True
        except TimeoutError:
            return False

    async def call(
        self, *, to: str, caller: str, audio: bytes, stop: asyncio.Event | None = None,
        on_event: Callable[[str, Any], None] | None = None,
        on_exchange: Callable[..., None] | None = None,
    ) -> CallResult:
        event = on_event or (lambda name, detail=None: None)
        say = on_exchange or (lambda direction, summary, *a, **k: None)
        audio_ms = len(audio) // BYTES_PER_MS
        call_id = f"{uuid.uuid4().hex}@simulator"
        self.placed.append({"to": to, "caller": caller, "audio_ms": audio_ms})
        if len(self.placed) > 10_000:
            del self.placed[:5_000]
        digit = to[-1:] if to else ""
        started = _now()
        say("out", f"INVITE sip:{to}@simulator SIP/2.0 (from {caller or 'anonymous'}, PCMA/PCMU)")
        say("in", "SIP/2.0 100 Trying")
        event("trying", {"status": 100})

        def ended(reason: str, status: int | None, phrase: str, ring_ms: int, **kw: Any) -> CallResult:
            return CallResult(call_id=call_id, reason=reason, sip_status=status, sip_phrase=phrase,
                              started_at=started, ended_at=_now(), ring_ms=ring_ms, audio_ms=audio_ms, **kw)

        quick = {"2": (300, 486, "Busy Here", "busy", 17), "4": (200, 404, "Not Found", "bad_number", 1),
                 "6": (100, 503, "Service Unavailable", "network_error", 41)}
        if digit in quick:
            ms, status, phrase, reason, q850 = quick[digit]
            if await self._wait(ms, stop):
                say("out", "CANCEL")
                return ended("stopped", 487, "Request Terminated", ms)
            say("in", f"SIP/2.0 {status} {phrase} (Reason: Q.850;cause={q850})")
            say("out", "ACK")
            return ended(reason, status, phrase, ms, q850=q850)
        say("in", "SIP/2.0 180 Ringing")
        event("ringing", {"status": 180, "phrase": "Ringing"})
        if digit == "3":
            if await self._wait(self.ring_timeout_ms, stop):
                say("out", "CANCEL")
                return ended("stopped", 487, "Request Terminated", _now() - started)
            say("out", "CANCEL (ring timeout)")
            say("in", "SIP/2.0 487 Request Terminated")
            say("out", "ACK")
            return ended("no_answer", 487, "Request Terminated", self.ring_timeout_ms, q850=19)
        if digit == "5":
            if await self._wait(4000, stop):
                say("out", "CANCEL")
                return ended("stopped", 487, "Request Terminated", 4000)
            say("in", "SIP/2.0 603 Decline")
            say("out", "ACK")
            return ended("declined", 603, "Decline", 4000, q850=21)
        if await self._wait(RING_MS, stop):
            say("out", "CANCEL")
            return ended("stopped", 487, "Request Terminated", RING_MS)
        say("in", "SIP/2.0 200 OK (PCMA/8000)")
        say("out", "ACK")
        answered = _now()  # real instants; the figures are the realistic ones whatever the speed
        event("answered", {"status": 200, "codec": "PCMA"})
        play_ms = audio_ms if digit != "1" else min(HANGUP_AFTER_MS, audio_ms // 2 or HANGUP_AFTER_MS)
        t0 = time.monotonic()
        stopped = await self._wait(play_ms, stop)
        if stopped:
            played = min(play_ms, int((time.monotonic() - t0) * 1000 / (self.speed or 1)))
            say("out", "BYE")
            say("in", "SIP/2.0 200 OK")
            return ended("stopped", 200, "OK", RING_MS, answered_at=answered, duration_ms=played + 40,
                         playback_ms=played)
        if digit == "1":
            say("in", "BYE (the callee hung up)")
            say("out", "SIP/2.0 200 OK")
            return ended("callee_hangup", 200, "OK", RING_MS, answered_at=answered, duration_ms=play_ms,
                         playback_ms=play_ms, q850=16)
        say("out", "BYE")
        say("in", "SIP/2.0 200 OK")
        return ended("played_to_end", 200, "OK", RING_MS, answered_at=answered, duration_ms=audio_ms + 120,
                     playback_ms=audio_ms)
