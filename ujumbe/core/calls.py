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
    if status == 403:
        return "rejected"
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
