"""One-time codes: making them, keeping only a keyed hash, checking them, and
the SMS-pumping guard's arithmetic. Pure: no clock, store or network here.

A code is never kept: only ``digest`` (HMAC-SHA256 under a key derived from
the server secret, bound to the verification's id so equal codes give unequal
digests). The text sent to the phone is kept masked (``mask``); the real text
travels sealed to the dispatcher.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, fields

MIN_LENGTH, MAX_LENGTH, DEFAULT_LENGTH = 4, 10, 6
MASK_CHAR = "*"  # GSM-7 and one septet like a digit: the masked text counts and prices as the real one

# {otp} and ${otp}; TingTing writes {otp}, Messangi's PIN texts {pin}.
_PLACEHOLDER = re.compile(r"\$?\{(otp|pin|code)\}")


class OtpError(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def generate(length: int = DEFAULT_LENGTH) -> str:
    check_length(length)
    # one draw, uniform over every code of that length (a draw per digit read
    # the system's random source once a digit: most of a code's cost)
    return f"{secrets.randbelow(10**length):0{length}d}"


def check_length(length: int) -> None:
    if not isinstance(length, int) or not MIN_LENGTH <= length <= MAX_LENGTH:
        raise OtpError(f"A code has {MIN_LENGTH}-{MAX_LENGTH} digits", "invalid_length")


def check_supplied(code: str) -> str:
    """A code the client chose: digits only, within the length bounds."""
    code = code.strip()
    if not code.isascii() or not code.isdigit():
        raise OtpError("A supplied code is digits only", "invalid_code")
    check_length(len(code))
    return code


def digest(key: bytes, verification_id: str, code: str) -> str:
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def matches(key: bytes, verification_id: str, code: str, stored: str) -> bool:
    # compare_digest: the time taken says nothing about how much matched
    return hmac.compare_digest(digest(key, verification_id, code.strip()), stored)


def has_placeholder(text: str) -> bool:
    return _PLACEHOLDER.search(text) is not None


def render(text: str, code: str, *, append: bool = False) -> str:
    """``text`` with every code placeholder filled. Without one, ``append``
    adds the code at the end (Messangi's PIN texts carry no placeholder);
    otherwise it is an error, since the code would never reach the user."""
    if not has_placeholder(text):
        if not append:
            raise OtpError("The text has no {otp} (or ${otp}) placeholder for the code", "missing_placeholder")
        return f"{text} {code}" if text else code
    return _PLACEHOLDER.sub(lambda _: code, text)


def mask(text: str, length: int, *, append: bool = False) -> str:
    return render(text, MASK_CHAR * length, append=append)


def spoken(code: str) -> str:
    """Digits one by one, as a voice should say a code: "1 2 3 4"."""
    return " ".join(code)


def prefix_of(e164: str, country_code: int, digits: int) -> str:
    """Country code and the first ``digits`` of the national number: the unit
    pumping fraud moves in (a block of premium-rate numbers shares it)."""
    cc = str(country_code)
    return e164[: len(cc) + digits]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per account; every field can be overridden (PUT /v1/verifications/settings)."""

    ttl_s: int = 600
    max_checks: int = 5
    sends_per_destination: int = 5  # per destination_window_s
    destination_window_s: int = 600
    prefix_digits: int = 3  # after the country code
    sends_per_prefix_hour: int = 100
    new_prefixes_per_hour: int = 5  # prefixes this account never sent a code to before

    @classmethod
    def merged(cls, overrides: dict[str, object] | None) -> Limits:
        if not overrides:
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in overrides.items() if k in names})  # type: ignore[arg-type]

    def validate(self) -> None:
        bounds = {
            "ttl_s": (30, 86_400), "max_checks": (1, 20), "sends_per_destination": (1, 100),
            "destination_window_s": (60, 86_400), "prefix_digits": (0, 6), "sends_per_prefix_hour": (1, 1_000_000),
            "new_prefixes_per_hour": (0, 10_000),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise OtpError(f"'{name}' must be a whole number from {low} to {high}", "invalid_settings")

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Counts:
    """What the store counted for one new code."""

    to_destination: int  # codes to this number in the destination window
    to_prefix: int  # codes to this prefix in the last hour
    prefix_known: bool  # a code went to this prefix before (any time)
    new_prefixes: int  # prefixes first used in the last hour


def refusal(limits: Limits, counts: Counts) -> tuple[str, str] | None:
    """(code, reason) when a new code must not be sent, else None."""
    if counts.to_destination >= limits.sends_per_destination:
        minutes = limits.destination_window_s // 60
        return ("too_many_sends", f"At most {limits.sends_per_destination} codes per number in {minutes} minutes")
    if not counts.prefix_known and counts.new_prefixes >= limits.new_prefixes_per_hour:
        return (
            "unusual_prefix_burst",
            f"Codes to {limits.new_prefixes_per_hour} number ranges this account never used before went out in "
            "the last hour; more are held back as possible SMS pumping",
        )
    if counts.to_prefix >= limits.sends_per_prefix_hour:
        return ("prefix_limit", f"At most {limits.sends_per_prefix_hour} codes per number range per hour")
    return None
