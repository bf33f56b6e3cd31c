"""A voice call's outcome: what the SIP exchange showed, in TingTing's words.

Pure: no sockets. The SIP stack (channels/sip) reports a ``CallResult``; the
pipeline keeps it on the message and maps it onto the one message life cycle
(``State``), the dialects name it back in their own words. The mapping follows
what carriers actually answer (see docs/voice.md): a 183 with early media is
often a recorded "number unreachable" and is never an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ujumbe.core.states import State


class Outcome(str, Enum):
    COMPLETED = "completed"  # answered and all audio played
    HUNGUP = "hungup"  # answered, the callee hung up before the end
    UNANSWERED = "unanswered"  # busy, no answer, declined
    FAILED = "failed"  # bad number, rejected, codec, server errors, no final answer
    TERMINATED = "terminated"  # we ended it: stopped, maximum duration, shutdown


# Reasons kept apart within an outcome (a campaign re-runs "busy" but not "bad_number").
REASONS: dict[str, Outcome] = {
    "played_to_end": Outcome.COMPLETED,
    "callee_hangup": Outcome.HUNGUP,
    "busy": Outcome.UNANSWERED,
    "no_answer": Outcome.UNANSWERED,
    "declined": Outcome.UNANSWERED,
    "bad_number": Outcome.FAILED,
    "rejected": Outcome.FAILED,
    "auth_failed": Outcome.FAILED,
    "codec": Outcome.FAILED,
    "network_error": Outcome.FAILED,  # 5xx/6xx not listed elsewhere, transport errors
    "timeout": Outcome.FAILED,  # no final answer within Timer B
    "no_media": Outcome.FAILED,  # answered, but the callee's RTP stopped (inactivity)
    "stopped": Outcome.TERMINATED,
    "max_duration": Outcome.TERMINATED,
    "shutdown": Outcome.TERMINATED,
}

# Human words for the dashboard and the docs, beside each reason code.
REASON_TEXT = {
    "played_to_end": "answered; the whole message was played",
    "callee_hangup": "answered; the callee hung up before the end",
    "busy": "the line was busy",
    "no_answer": "rang without being answered",
    "declined": "the callee declined the call",
    "bad_number": "the number does not exist",
    "rejected": "the carrier refused the call",
    "auth_failed": "the trunk refused our credentials",
    "codec": "no common audio codec",
    "network_error": "the carrier or network failed",
    "timeout": "no answer from the carrier",
    "no_media": "the call's audio stopped",
    "stopped": "stopped by us (campaign stopped)",
    "max_duration": "ended by us at the maximum call length",
    "shutdown": "ended by us when the service stopped",
}


def reason_for_status(status: int, *, after_cancel: bool = False) -> str:
    """The reason for a final non-2xx answer to an INVITE.

    ``after_cancel``: we sent CANCEL at the ring timeout, so the 487 that
    follows means nobody answered, not that the call was refused.
    """
    if status == 487:
        return "no_answer" if after_cancel else "rejected"
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 483):
        return "no_answer"
    if status == 603:
        return "declined"
    if status in (404, 484, 604):
        return "bad_number"
    if status in (401, 407):
        return "auth_failed"
    if status in (488, 606, 415):
        return "codec"
    if 400 <= status < 500:
        return "rejected"
    return "network_error"


def state_for(outcome: Outcome) -> State:
    """The message life cycle's state for a call's outcome. An answered call
    (played or hung up on) was delivered; a call we ended after the answer
    was delivered too (it is charged); one that never connected was not."""
    if outcome in (Outcome.COMPLETED, Outcome.HUNGUP):
        return State.DELIVERED
    if outcome is Outcome.UNANSWERED:
        return State.UNDELIVERED
    if outcome is Outcome.FAILED:
        return State.FAILED
    return State.DELIVERED  # TERMINATED after answer; before one see CallResult.state


@dataclass(slots=True)
class CallResult:
    """What one call did. Times in milliseconds; epoch ms for instants."""

    call_id: str
    reason: str  # a key of REASONS
    sip_status: int | None = None  # the INVITE's final status (200 when answered)
    sip_phrase: str = ""
    q850: int | None = None  # Reason: Q.850;cause=N, when the peer sent one
    started_at: int = 0  # INVITE sent
    answered_at: int | None = None  # 200 OK received
    ended_at: int = 0  # BYE sent or received, or the final answer
    ring_ms: int = 0  # INVITE -> final answer
    duration_ms: int = 0  # answer -> hang-up (what is billed)
    playback_ms: int = 0  # audio played, capped at its length
    audio_ms: int = 0  # the audio's length
    dtmf: str = ""  # RFC 4733 digits the callee pressed, in order
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> Outcome:
        return REASONS.get(self.reason, Outcome.FAILED)

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def state(self) -> State:
        if self.outcome is Outcome.TERMINATED and not self.answered:
            return State.FAILED
        return state_for(self.outcome)

    def as_dict(self) -> dict[str, object]:
        """The call's facts as they are kept on the message and shown in the API."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "reason_text": REASON_TEXT.get(self.reason, self.reason),
            "sip_status": self.sip_status,
            "sip_phrase": self.sip_phrase,
            "q850": self.q850,
            "ring_seconds": round(self.ring_ms / 1000, 3),
            "duration_seconds": round(self.duration_ms / 1000, 3),
            "playback_seconds": round(self.playback_ms / 1000, 3),
            "audio_seconds": round(self.audio_ms / 1000, 3),
            "dtmf": self.dtmf,
        }


def billable_minutes(duration_ms: int) -> int:
    """Per started minute: 0 s is nothing, 1 ms to 60 s is one minute."""
    return 0 if duration_ms <= 0 else (duration_ms + 59_999) // 60_000


# --- what a voice message asks for, and what it costs ---

# TingTing's voices and languages (core/speech); channels/voice renders each through services/speech.
from ujumbe.core import speech  # noqa: E402
from ujumbe.core.speech import DEFAULT_VOICE, LANGUAGES, MAX_LENGTH_FACTOR, MIN_LENGTH_FACTOR, VOICES  # noqa: E402
LENGTH_FACTOR_RANGE = (MIN_LENGTH_FACTOR, MAX_LENGTH_FACTOR)
# What a call's bound adds for recording its outcome (the receipt path retries for a few seconds).
LOST_GRACE_MS = 60_000
MAX_TEXT = 2000  # characters spoken in one call: far past any notice, a few minutes of speech
# The slowest speech per character measured here (Nepali, length_factor 1.0,
# pauses included) is about 13 characters a second: an upper bound for the
# hold uses 8, plus a second of lead-in.
CHARS_PER_S = 8.0
UNITS = ("per_minute", "per_call")


@dataclass(slots=True)
class VoiceOptions:
    """How a voice message is spoken: a text rendered at send time, or an
    uploaded audio file (``audio_id``), never both."""

    voice: str = DEFAULT_VOICE
    length_factor: float = 1.0
    language: str = "ne"
    audio_id: str | None = None
    audio_ms: int | None = None  # the uploaded audio's length, when known at accept

    def as_meta(self) -> dict[str, object]:
        out: dict[str, object] = {"voice": self.voice, "length_factor": self.length_factor, "language": self.language}
        if self.audio_id:
            out["audio_id"] = self.audio_id
        if self.audio_ms is not None:
            out["audio_ms"] = self.audio_ms
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, object] | None) -> VoiceOptions:
        m = meta or {}
        return cls(
            voice=str(m.get("voice") or DEFAULT_VOICE), length_factor=float(m.get("length_factor") or 1.0),  # type: ignore[arg-type]
            language=str(m.get("language") or "ne"), audio_id=str(m["audio_id"]) if m.get("audio_id") else None,
            audio_ms=int(m["audio_ms"]) if m.get("audio_ms") is not None else None,  # type: ignore[call-overload]
        )


def too_long_to_say(text: str, vo: VoiceOptions) -> str | None:
    """Why ``text`` cannot be said in one call, or None. Its characters, and
    how long it lasts said (core/speech.check_duration: digits are said one
    by one, so 2,000 of them are over 20 minutes), checked at accept rather
    than failing the call when it is rendered."""
    if len(text) > MAX_TEXT:
        return f"The text has {len(text)} characters; a call speaks at most {MAX_TEXT}"
    if vo.audio_id:  # an uploaded file is played, not the text
        return None
    try:
        speech.check_duration(speech.speakable(text, vo.language), speech.rate_for(vo.length_factor))
    except speech.SpeechError as exc:
        return str(exc) if exc.code == "text_too_long" else None  # the others are answered where they are checked
    return None


def estimated_ms(text: str, length_factor: float = 1.0) -> int:
    """An upper bound of how long ``text`` takes to say (for the credit hold)."""
    return int(1000 + len(text) / CHARS_PER_S * length_factor * 1000)


def hold_minutes(audio_ms: int) -> int:
    """Minutes to hold for audio this long: rounded up, at least one, with a
    second of slack for the hang-up after the last frame."""
    return max(1, billable_minutes(audio_ms + 1000))


def call_cost(unit: str, price: int, result: CallResult | None, held: int) -> int:
    """What a call finally costs: per started minute of its duration, or the
    price once per answered call; nothing when it was never answered; never
    more than was held at accept."""
    if result is None or not result.answered:
        return 0
    cost = price if unit == "per_call" else price * billable_minutes(result.duration_ms)
    return max(0, min(cost, held))


def result_from_dict(d: dict[str, object]) -> CallResult:
    """A CallResult back from ``as_record`` (parked receipts, stored rows)."""
    names = set(CallResult.__slots__)  # type: ignore[attr-defined]
    return CallResult(**{k: v for k, v in d.items() if k in names})  # type: ignore[arg-type]


def as_record(r: CallResult) -> dict[str, object]:
    """Every field of a CallResult, JSON-able (to park it or store it)."""
    return {k: getattr(r, k) for k in CallResult.__slots__}  # type: ignore[attr-defined]


def call_row(result: CallResult, *, message_id: int, account_id: str, connector: str, now: int,
             sip_log: list[dict[str, object]] | None = None) -> dict[str, object]:
    """The ``calls`` row of an ended call."""
    ringing = result.detail.get("ringing_at") if result.detail else None
    return {
        "message_id": message_id, "account_id": account_id, "connector": connector, "call_id": result.call_id,
        "outcome": result.outcome.value, "reason": result.reason, "sip_status": result.sip_status,
        "sip_phrase": result.sip_phrase or "", "q850": result.q850, "started_at": result.started_at or None,
        "ringing_at": int(ringing) if ringing else None, "answered_at": result.answered_at,
        "ended_at": result.ended_at or None, "ring_ms": result.ring_ms, "duration_ms": result.duration_ms,
        "playback_ms": result.playback_ms, "audio_ms": result.audio_ms, "dtmf": result.dtmf or "",
        "sip_log": sip_log or [], "created_at": now,
    }


def call_view(row: dict[str, object]) -> dict[str, object]:
    """A stored call as the API and the callbacks show it: ``CallResult.as_dict``
    and its instants in ISO 8601."""
    from ujumbe.core.timefmt import iso

    result = CallResult(
        call_id=str(row["call_id"]), reason=str(row["reason"]), sip_status=row.get("sip_status"),  # type: ignore[arg-type]
        sip_phrase=str(row.get("sip_phrase") or ""), q850=row.get("q850"),  # type: ignore[arg-type]
        ring_ms=int(row.get("ring_ms") or 0), duration_ms=int(row.get("duration_ms") or 0),  # type: ignore[call-overload]
        playback_ms=int(row.get("playback_ms") or 0), audio_ms=int(row.get("audio_ms") or 0),  # type: ignore[call-overload]
        dtmf=str(row.get("dtmf") or ""),
    )
    out = result.as_dict()
    out["billable_minutes"] = billable_minutes(result.duration_ms) if row.get("answered_at") else 0
    out["call_id"] = result.call_id  # the SIP Call-ID, what a carrier's support asks for
    for key in ("started_at", "ringing_at", "answered_at", "ended_at"):
        out[key] = iso(row.get(key))  # type: ignore[arg-type]
    return out


def summary(result: CallResult) -> str:
    """One line for the final event: the outcome, the SIP answer, the figures."""
    status = f"{result.sip_status} {result.sip_phrase}".strip() if result.sip_status else "no SIP answer"
    q850 = f", Q.850 cause {result.q850}" if result.q850 is not None else ""
    figures = ""
    if result.answered:
        figures = (f"; duration {result.duration_ms / 1000:.1f} s, played {result.playback_ms / 1000:.1f} s"
                   f" of {result.audio_ms / 1000:.1f} s")
    return f"{result.outcome.value} ({result.reason}): {status}{q850}{figures}"
