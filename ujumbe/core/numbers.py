"""Recipient normalization to E.164 and sender-ID classification.

Clients send numbers in every shape: local (``0708400000``), national without
the trunk zero (``708400000``), international with or without ``+``, with
spaces and dashes. Everything inside Ujumbe uses bare E.164 digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType
from phonenumbers import timezone as pn_timezone
from phonenumbers import carrier as _carrier
from phonenumbers.carrierdata import CARRIER_DATA, CARRIER_LONGEST_PREFIX
from phonenumbers.phonenumberutil import ValidationResult, _test_number_length
from phonenumbers.prefix import _find_lang

_MAX_E164_DIGITS = 15  # ITU-T E.164
_MIN_DIGITS = 4  # nothing shorter is a subscriber number anywhere
_SHORTCODE_MAX_DIGITS = 8

# Characters people use to format numbers; anything else means it is not one.
_ALLOWED_RE = re.compile(r"^\+?[0-9\s().\-/]+$")
_LETTER_RE = re.compile(r"[^\W\d_]")  # any Unicode letter


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str  # digits only, no '+', e.g. "254708400000"
    region: str  # "KE"
    network: str | None  # carrier from phonenumbers' prefix data; None when unknown
    country_code: int


class InvalidNumber(ValueError):
    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(reason)


Typed = tuple[phonenumbers.PhoneNumber, int]  # a valid number and its PhoneNumberType


def _valid(parsed: phonenumbers.PhoneNumber) -> Typed | None:
    # number_type is UNKNOWN exactly when is_valid_number is false; the type
    # is kept so the carrier lookup need not work it out a second time.
    kind = _number_type(parsed)
    return None if kind == PhoneNumberType.UNKNOWN else (parsed, kind)


# phonenumbers.number_type, with each description's pattern compiled once:
# it looks every pattern up in re's cache and tests up to eleven descriptions
# a number (13 of a new number's ~32 us). Same order, same tests; the test
# compares both on every region's example numbers.
_TYPED = (("premium_rate", PhoneNumberType.PREMIUM_RATE), ("toll_free", PhoneNumberType.TOLL_FREE),
          ("shared_cost", PhoneNumberType.SHARED_COST), ("voip", PhoneNumberType.VOIP),
          ("personal_number", PhoneNumberType.PERSONAL_NUMBER), ("pager", PhoneNumberType.PAGER),
          ("uan", PhoneNumberType.UAN), ("voicemail", PhoneNumberType.VOICEMAIL))
Test = tuple[frozenset[int] | None, Callable[[str], object]] | None  # (lengths, fullmatch); None: never matches
_plans: dict[int, tuple[Any, ...]] = {}  # id(metadata): its tests; metadata lives as long as the process


def _test(desc: Any) -> Test:
    # as _is_number_matching_desc: no description or no pattern matches nothing;
    # an empty list of lengths allows any
    if desc is None or not desc.national_number_pattern:
        return None
    return (frozenset(desc.possible_length) or None, re.compile(desc.national_number_pattern).fullmatch)


def _plan(meta: Any) -> tuple[Any, ...]:
    typed = tuple((kind, test) for name, kind in _TYPED if (test := _test(getattr(meta, name))) is not None)
    return (meta, _test(meta.general_desc), typed, _test(meta.fixed_line), _test(meta.mobile),
            meta.same_mobile_and_fixed_line_pattern)


def _hit(test: Test, nsn: str) -> bool:
    return test is not None and (test[0] is None or len(nsn) in test[0]) and test[1](nsn) is not None


def _number_type(parsed: phonenumbers.PhoneNumber) -> int:
    meta = PhoneMetadata.metadata_for_region_or_calling_code(
        parsed.country_code, phonenumbers.region_code_for_number(parsed))
    if meta is None:
        return PhoneNumberType.UNKNOWN
    plan = _plans.get(id(meta))
    if plan is None or plan[0] is not meta:
        plan = _plans[id(meta)] = _plan(meta)
    _, general, typed, fixed, mobile, same = plan
    nsn = phonenumbers.national_significant_number(parsed)
    if not _hit(general, nsn):
        return PhoneNumberType.UNKNOWN
    for kind, test in typed:
        if _hit(test, nsn):
            return kind
    if _hit(fixed, nsn):
        return PhoneNumberType.FIXED_LINE_OR_MOBILE if same or _hit(mobile, nsn) else PhoneNumberType.FIXED_LINE
    return PhoneNumberType.MOBILE if not same and _hit(mobile, nsn) else PhoneNumberType.UNKNOWN


def _parse_valid(candidate: str, region: str | None) -> Typed | None:
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    return _valid(parsed)


_CARRIER_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER)


def _network(parsed: phonenumbers.PhoneNumber) -> str | None:
    # Prefix-based: after number portability this is the *original* network.
    return _carrier.name_for_number(parsed, "en") or None


_carrier_heads: dict[int, int] = {}  # country code: digits of E.164 that decide its carrier


def _valid_network(e164: str, country_code: int) -> str | None:
    """carrier.name_for_valid_number(..., "en") or None, looked up once per
    prefix: its answer depends only on the number's longest prefix among the
    carrier data's keys, so only on as many digits as the longest key of the
    country code (6 for Kenya's 12), and a new number's prefix is seldom new."""
    head = _carrier_heads.get(country_code)
    if head is None:
        code = str(country_code)
        head = _carrier_heads[country_code] = max([len(code), *(len(k) for k in CARRIER_DATA if k.startswith(code))])
    return _prefix_network(e164[:head])


@lru_cache(maxsize=10_000)
def _prefix_network(head: str) -> str | None:
    # phonenumbers.prefix._prefix_description_for_number, longest prefix first
    for length in range(min(len(head), CARRIER_LONGEST_PREFIX), 0, -1):
        names = CARRIER_DATA.get(head[:length])
        if names is not None and (name := _find_lang(names, "en", None, None)) is not None:
            return name or None
    return None


def _split_country_code(digits: str) -> tuple[int, str] | None:
    # As phonenumbers does: the first 1-3 digits that are a known code.
    for length in (1, 2, 3):
        code = int(digits[:length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code, digits[length:]
    return None


def _fast(text: str, region: str) -> Typed | None:
    """The commonest shapes, "+<cc><number>", "<cc><number>" with the
    region's own code, "0<number>" and "<number>", read without ``phonenumbers.parse``
    (~25 us a number, the larger part of normalizing one).

    Exact by construction: it returns a number only where ``parse`` can read
    nothing else (no national prefix left to strip, no international dialling
    prefix, no leading zero kept, too long to be a national number) and the
    result is valid; anything else (None) goes to the full parser. The test
    compares both on every region's example numbers.
    """
    if text[0] == "+":
        digits = text[1:]
        if not digits.isdigit() or not digits.isascii() or digits[0] == "0":
            return None
        split = _split_country_code(digits)
        if split is None:
            return None
        code, national = split
        meta = PhoneMetadata.metadata_for_region_or_calling_code(code, phonenumbers.region_code_for_country_code(code))
    else:
        if not text.isdigit() or not text.isascii():
            return None
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None or (meta.international_prefix and re.match(meta.international_prefix, text)):
            return None
        code = meta.country_code
        home = str(code)
        if text.startswith(home):
            # parse takes the region's code off a number too long to be national
            if _test_number_length(text, meta) != ValidationResult.TOO_LONG:
                return None
            national = text[len(home):]
        elif text[0] == "0" and meta.national_prefix_for_parsing == "0" and meta.national_prefix_transform_rule is None:
            national = text[1:]
        elif text[0] != "0":
            # the national number without its trunk prefix: a spreadsheet's
            # 0712345678 is the number 712345678 (parse takes it as national
            # too; a national prefix it would strip is refused below)
            national = text
        else:
            return None
    if meta is None or not national or national[0] == "0":
        return None
    prefix = meta.national_prefix_for_parsing
    if prefix and re.match(prefix, national):
        return None
    return _valid(phonenumbers.PhoneNumber(country_code=code, national_number=int(national)))


@lru_cache(maxsize=100_000)
def _normalize(raw: str, region: str) -> PhoneNumber | str:
    """Returns the number or the reason it is invalid.

    The reason string is cached rather than an exception: re-raising one cached
    instance would keep growing its traceback.
    """
    text = raw.strip()
    if not text:
        return "no phone number was given"
    if _LETTER_RE.search(text):
        return f"{raw!r} contains letters; a phone number has only digits"
    if not _ALLOWED_RE.match(text):
        return f"{raw!r} contains characters that are not part of a phone number"
    invalid = f"{raw!r} is not a valid phone number for region {region}"
    digits = re.sub(r"\D", "", text)
    # Skip the parser for lengths no numbering plan allows (+3: room for an IDD like 000).
    if not _MIN_DIGITS <= len(digits) <= _MAX_E164_DIGITS + 3:
        return invalid

    found = _fast(text, region) or _parse_valid(text, region)
    if found is None and not text.startswith("+"):
        # International written without '+', e.g. "9779841234567" sent with region KE.
        found = _parse_valid("+" + digits, None)
        if found is None and digits.startswith("00"):
            # The common "00" international prefix, even where the local IDD differs.
            found = _parse_valid("+" + digits[2:], None)
    if found is None:
        return invalid
    parsed, kind = found

    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
    return PhoneNumber(
        e164=e164,
        region=phonenumbers.region_code_for_number(parsed) or region,
        # as carrier.name_for_number does, with the type already known
        network=_valid_network(e164, parsed.country_code) if kind in _CARRIER_TYPES else None,
        country_code=parsed.country_code,
    )


def normalize(raw: str, region: str = "KE") -> PhoneNumber:
    """Normalize ``raw`` to E.164; raises InvalidNumber with a readable reason."""
    result = _normalize(raw, region.upper())
    if isinstance(result, str):
        raise InvalidNumber(raw, result)
    return result


def stored_form(raw: str, region: str = "KE") -> str:
    """A recipient as messages store it, for looking them up: a number in any
    form a send takes (+254 7..., 07..., spaces) is its E.164 digits;
    anything else (an email address, a refused recipient) stays as given."""
    if "@" in raw:
        return raw
    result = _normalize(raw, region.upper())
    return raw if isinstance(result, str) else result.e164


@lru_cache(maxsize=100_000)
def carrier_name(e164: str) -> str | None:
    """Network name for bare (or '+'-prefixed) E.164 digits; None when unknown."""
    try:
        parsed = phonenumbers.parse("+" + e164.lstrip("+"), None)
    except phonenumbers.NumberParseException:
        return None
    return _network(parsed)


def classify_sender(sender: str) -> str:
    """"alphanumeric" | "shortcode" (digits, <= 8) | "international" (E.164, maybe '+').

    Decides the SMPP source TON/NPI. Spaces and dashes inside a numeric sender
    are ignored; any letter makes it alphanumeric.
    """
    text = sender.strip()
    if not text:
        raise ValueError("sender is empty")
    compact = re.sub(r"[\s\-]", "", text)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if not (digits.isascii() and digits.isdigit()):
        return "alphanumeric"
    if len(digits) > _MAX_E164_DIGITS:
        raise ValueError(f"sender {sender!r} has {len(digits)} digits; E.164 allows at most {_MAX_E164_DIGITS}")
    if plus or len(digits) > _SHORTCODE_MAX_DIGITS:
        return "international"
    return "shortcode"


@lru_cache(maxsize=100_000)
def time_zone(e164: str) -> str | None:
    """The IANA time zone of a number's country or area (e.g. Africa/Nairobi),
    for dialects whose times are the subscriber's local time."""
    try:
        zones = pn_timezone.time_zones_for_number(phonenumbers.parse("+" + e164.lstrip("+")))
    except phonenumbers.NumberParseException:
        return None
    return zones[0] if zones and zones[0] != "Etc/Unknown" else None
