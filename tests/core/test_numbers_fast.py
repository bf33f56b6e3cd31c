"""The fast path of number normalization reads every number exactly as
phonenumbers.parse does, or leaves it to parse."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType, carrier

from ujumbe.core import numbers


def forms(region: str) -> list[tuple[str, str]]:
    """Example numbers of every type for the region, a few near misses, in the
    shapes clients send, each with the region and with KE as the account's."""
    out = []
    for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE,
                 PhoneNumberType.PREMIUM_RATE, PhoneNumberType.VOIP, PhoneNumberType.UAN):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
        cc = str(example.country_code)
        national = e164[len(cc):]
        variants = {national, national[:-1], national + "5", national[:-1] + str((int(national[-1]) + 3) % 10),
                    "0" + national, "00" + national}
        for nsn in variants:
            for text in ("+" + cc + nsn, cc + nsn, "0" + nsn, nsn, "00" + cc + nsn):
                out += [(text, region), (text, "KE")]
    return out


def test_fast_path_agrees_with_phonenumbers_everywhere() -> None:
    taken = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for text, account_region in forms(region):
            found = numbers._fast(text, account_region)
            if found is None:
                continue
            fast, kind = found
            assert kind == phonenumbers.number_type(fast)
            taken += 1
            slow = phonenumbers.parse(text, account_region)
            assert phonenumbers.is_valid_number(slow), (text, account_region)
            assert (fast.country_code, fast.national_number) == (slow.country_code, slow.national_number), (
                text, account_region)
    assert taken > 1000  # the path is used, not merely safe


def test_networks_are_phonenumbers_carriers() -> None:
    for region in ("KE", "UG", "TZ", "NG", "GB", "US", "IN"):
        for text, account_region in forms(region):
            try:
                got = numbers.normalize(text, account_region)
            except numbers.InvalidNumber:
                continue
            expected = carrier.name_for_number(phonenumbers.parse("+" + got.e164), "en") or None
            assert got.network == expected, (text, account_region)


def test_fast_path_takes_the_common_kenyan_shapes() -> None:
    # "708400000": a spreadsheet's number cell drops the leading zero
    for text in ("+254708400000", "254708400000", "0708400000", "708400000"):
        assert numbers._fast(text, "KE") is not None, text
        got = numbers.normalize(text, "KE")
        assert (got.e164, got.region, got.network, got.country_code) == ("254708400000", "KE", "Safaricom", 254)
    for text in ("+2540708400000", "0254708400000", "+0708400000", "000254708400000"):
        assert numbers._fast(text, "KE") is None, text


def test_number_type_and_network_are_phonenumbers_own_everywhere() -> None:
    # the precompiled type tests and the carrier looked up by prefix, against
    # phonenumbers' own on valid and near-miss numbers of every region
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for text, _ in forms(region):
            try:
                parsed = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            kind = phonenumbers.number_type(parsed)
            assert numbers._number_type(parsed) == kind, (text, region)
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
            assert numbers._valid_network(e164, parsed.country_code) == (
                carrier.name_for_valid_number(parsed, "en") or None), (text, region)
            checked += kind != PhoneNumberType.UNKNOWN
    assert checked > 1000
