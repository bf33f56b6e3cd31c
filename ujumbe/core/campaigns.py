"""Campaign rules, pure: statuses, services, tags, re-run selections, schedules,
and reading contact rows (numbers come from spreadsheets as floats)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

# --- pace ---

# How far ahead of now a campaign's pace may be paid for: the most any round
# of any worker takes at once is this much of the rate (a burst stays small),
# and it is longer than a worker's round, so the workers keep the full rate.
PACE_HORIZON_US = 500_000


def pace_cost_us(n: int, rate: int) -> int:
    """The time ``n`` sends take at ``rate`` a second, rounded up (never faster)."""
    return -(-n * 1_000_000 // rate)


def pace_share(paced_until_us: int, now_us: int, rate: int, limit: int) -> tuple[int, int]:
    """How many sends the pace allows now (at most ``limit``), and the horizon
    used: at least one send's time, so a slow rate still sends. Time already
    past does not count (a pause does not save up a burst)."""
    horizon = max(PACE_HORIZON_US, pace_cost_us(1, rate))
    base = max(paced_until_us, now_us)
    return max(0, min(limit, (now_us + horizon - base) * rate // 1_000_000)), horizon


# --- statuses ---

# A number's status. "scheduled": waiting its turn in a run; "running": its
# message is out and not final yet.
NOT_STARTED, SCHEDULED, RUNNING = "not started", "scheduled", "running"
COMPLETED, FAILED, HUNGUP, UNANSWERED, TERMINATED = "completed", "failed", "hungup", "unanswered", "terminated"
NUMBER_STATUSES = (NOT_STARTED, SCHEDULED, RUNNING, COMPLETED, FAILED, HUNGUP, UNANSWERED, TERMINATED)
FINAL_NUMBER = (COMPLETED, FAILED, HUNGUP, UNANSWERED, TERMINATED)
# Statuses a run may be re-run over (TingTing's list).
RERUNNABLE = (HUNGUP, UNANSWERED, FAILED, TERMINATED, COMPLETED)

# A campaign's status.
C_NOT_STARTED, C_SCHEDULED, C_RUNNING, C_PAUSED = "not started", "scheduled", "running", "paused"
C_COMPLETED, C_TERMINATED = "completed", "terminated"
ACTIVE = (C_SCHEDULED, C_RUNNING, C_PAUSED)

SERVICES = ("SMS", "PHONE")

# A message's final state -> the number's status (SMS; calls add hungup/unanswered).
_BY_STATE = {"delivered": COMPLETED}


class RuleError(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def outcome(message_state: str) -> str:
    """A number's status once its message reached ``message_state`` (final)."""
    return _BY_STATE.get(message_state, FAILED)


def call_status(call_outcome: str | None, message_state: str) -> str:
    """A PHONE number's status: its call's outcome (core.calls.Outcome, the
    same words: completed, hungup, unanswered, failed, terminated); a call
    never placed (refused, expired) failed."""
    if call_outcome in (COMPLETED, HUNGUP, UNANSWERED, FAILED, TERMINATED):
        return call_outcome
    return FAILED if message_state != "delivered" else COMPLETED


def seconds(ms: int | None) -> int | None:
    """A call's duration as the number shows it: whole seconds, rounded up
    (a 0.2 s answer is 1 s), None when it was never placed."""
    return None if ms is None else (int(ms) + 999) // 1000


def playback_text(ms: int | None) -> str | None:
    """Seconds of audio played, to a tenth ("12.5"), None when never placed."""
    return None if ms is None else f"{int(ms) / 1000:.1f}"


# --- what a PHONE run plays ---

PRIORITIES = ("message", "audio")


def length_factor(value: object, low: float, high: float) -> float | None:
    """TingTing sends ``"1.4"`` as text; a number in ``low..high`` (bigger is slower)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        factor = float(str(value).strip())
    except ValueError:
        raise RuleError(f"'length_factor' must be a number such as 1.4, not {value!r}", "invalid_length_factor") from None
    if not low <= factor <= high:
        raise RuleError(f"'length_factor' must be {low:.2f}-{high:.2f} (bigger is slower)", "invalid_length_factor")
    return factor


def plays_audio(*, priority: str | None, new_message: bool, new_audio: bool, has_message: bool,
                has_audio: bool) -> bool:
    """Whether a PHONE run plays the audio (else it speaks the message).
    TingTing: a new message or audio given is what plays; a campaign that has
    both needs ``priority`` (message or audio) to say which."""
    if priority:
        name = priority.strip().lower()
        if name not in PRIORITIES:
            raise RuleError("'priority' is message or audio", "invalid_priority")
        if name == "audio" and not (has_audio or new_audio):
            raise RuleError("priority audio, but the campaign has no audio: upload aud_file", "missing_audio")
        if name == "message" and not (has_message or new_message):
            raise RuleError("priority message, but the campaign has no message", "missing_text")
        return name == "audio"
    if new_audio and new_message:
        raise RuleError("Give a message or an audio for the calls, or both with 'priority'", "missing_priority")
    if new_audio or new_message:
        return new_audio
    if has_audio and has_message:
        raise RuleError("The campaign has a message and an audio: give 'priority' message or audio",
                        "missing_priority")
    if not has_audio and not has_message:
        raise RuleError("Give the message to say or the audio to play (the campaign has none)", "missing_text")
    return has_audio


def parse_services(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"SMS"``, ``"PHONE"``, ``"SMS,PHONE"`` or a list of them; upper case, each once."""
    items = value.split(",") if isinstance(value, str) else list(value)
    found: list[str] = []
    for item in items:
        name = str(item).strip().upper()
        if not name:
            continue
        if name not in SERVICES:
            raise RuleError(f"'{item}' is not a service; use SMS, PHONE or both", "invalid_services")
        if name not in found:
            found.append(name)
    if not found:
        raise RuleError("Give the campaign's services: SMS, PHONE or both", "invalid_services")
    return tuple(s for s in SERVICES if s in found)


def rerun_statuses(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The statuses a re-run selects. Takes a list, a comma-separated string,
    and the document's own one-string form ``["failed, hungup"]``."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    found: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise RuleError(f"A status must be a string, not {item!r}", "invalid_status")
        for part in item.split(","):
            name = part.strip().lower().replace("_", " ")
            if not name:
                continue
            if name not in RERUNNABLE:
                raise RuleError(
                    f"'{part.strip()}' is not a status to re-run; use {', '.join(RERUNNABLE)}", "invalid_status"
                )
            if name not in found:
                found.append(name)
    return tuple(found)


# --- tags ---

_TAG = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def tags_in(message: str) -> list[str]:
    return list(dict.fromkeys(m.group(1) for m in _TAG.finditer(message)))


def render(message: str, tags: Mapping[str, object], usable: Iterable[str]) -> str:
    """The message for one number: ``{tag}`` filled from its tags. A usable tag
    the number lacks becomes empty; braces around any other name stay as written."""
    known = set(usable) | set(tags)

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in known:
            return m.group(0)
        v = tags.get(name)
        return "" if v is None else tag_text(v)

    return _TAG.sub(value, message)


def tag_text(value: object) -> str:
    """A tag as text: spreadsheet floats without their '.0' (25.0 -> "25")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def clean_tag_name(name: object) -> str:
    """A column header as a tag name: trimmed, inner spaces as underscores
    (TingTing's files name them ``tags_name``, ``tags_age``)."""
    return re.sub(r"\s+", "_", str(name).strip())


# --- numbers from contact files ---


def number_text(cell: object) -> str:
    """A number cell as digits: spreadsheets give 9843818700.0 (or 9.8438187E9)."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, float):
        if cell.is_integer():
            return str(int(cell))
        return repr(cell)
    text = str(cell).strip()
    if re.fullmatch(r"\d+\.0+", text):
        return text.split(".")[0]
    if re.fullmatch(r"\d(\.\d+)?[eE]\+?\d+", text):
        try:
            value = Decimal(text)
        except InvalidOperation:
            return text
        if value == value.to_integral_value():
            return str(int(value))
    return text


# --- time ---


def zone_of(time_zone: str | None, region: str) -> ZoneInfo:
    """The account's zone, else its region's (when the region has one), else UTC."""
    if time_zone:
        return ZoneInfo(time_zone)
    try:
        zones = pn_timezone.time_zones_for_geographical_number(phonenumbers.example_number(region))
    except Exception:  # an unknown region has no example number
        zones = ()
    if len(zones) == 1 and zones[0] != "Etc/Unknown":
        try:
            return ZoneInfo(zones[0])
        except ZoneInfoNotFoundError:
            pass
    return ZoneInfo("UTC")


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"'{name}' is not a time zone (use an IANA name such as Asia/Kathmandu)",
                        "invalid_time_zone") from None
    return name


def parse_schedule(value: str, zone: ZoneInfo) -> int:
    """``2023-05-09T17:07`` (no offset: read in ``zone``) or with an offset; epoch ms."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RuleError(f"'{value}' is not a date and time like 2023-05-09T17:07", "invalid_schedule") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return int(when.timestamp() * 1000)


def local_iso(ms: int | None, zone: ZoneInfo) -> str | None:
    """Epoch ms as ISO 8601 in ``zone``, with its offset (+05:45)."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="seconds")
