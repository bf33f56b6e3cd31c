"""Recipient normalization as clients write numbers, and sender classification."""

from __future__ import annotations

import pytest

from ujumbe.core.numbers import InvalidNumber, PhoneNumber, carrier_name, classify_sender, normalize


@pytest.mark.parametrize("raw", ["0708400000", "708400000", "+254 708 400000", "254708400000", "+254-708-400-000"])
def test_kenyan_forms_normalize_to_e164(raw: str) -> None:
    assert normalize(raw, "KE") == PhoneNumber(
        e164="254708400000", region="KE", network="Safaricom", country_code=254
    )


def test_default_region_is_kenya() -> None:
    assert normalize("0708400000").e164 == "254708400000"


def test_kenyan_airtel() -> None:
    assert normalize("0733123456", "KE").network == "Airtel"


@pytest.mark.parametrize(
    ("raw", "e164", "network"),
    [
        ("9841234567", "9779841234567", "Nepal Telecom"),
        ("+977 984-1234567", "9779841234567", "Nepal Telecom"),
        ("9801234567", "9779801234567", "NCell"),
    ],
)
def test_nepal(raw: str, e164: str, network: str) -> None:
    number = normalize(raw, "NP")
    assert (number.e164, number.region, number.network, number.country_code) == (e164, "NP", network, 977)


@pytest.mark.parametrize(
    ("raw", "network"),
    [("04141234567", "movistar"), ("0414-1234567", "movistar"), ("4161234567", "Movilnet"), ("04121234567", "Digitel GSM")],
)
def test_venezuela(raw: str, network: str) -> None:
    number = normalize(raw, "VE")
    assert number.e164 == "58" + raw.lstrip("0").replace("-", "")
    assert number.region == "VE"
    assert number.network == network
    assert number.country_code == 58


@pytest.mark.parametrize(
    ("raw", "region", "e164", "country"),
    [
        ("254708400000", "NP", "254708400000", "KE"),
        ("9779841234567", "KE", "9779841234567", "NP"),
        ("584141234567", "KE", "584141234567", "VE"),
        ("00254708400000", "NP", "254708400000", "KE"),
    ],
)
def test_international_without_plus_parses_whatever_the_region(raw: str, region: str, e164: str, country: str) -> None:
    number = normalize(raw, region)
    assert number.e164 == e164
    assert number.region == country


def test_valid_landline_is_accepted_without_network() -> None:
    number = normalize("020 2222222", "KE")
    assert number.e164 == "254202222222"
    assert number.network is None


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("123", "KE", "'123' is not a valid phone number for region KE"),
        ("070840000", "KE", "'070840000' is not a valid phone number for region KE"),
        ("0708400000000000000000", "KE", "'0708400000000000000000' is not a valid phone number for region KE"),
        ("12345", "NP", "'12345' is not a valid phone number for region NP"),
        ("07o8400000", "KE", "'07o8400000' contains letters; a phone number has only digits"),
        ("CALL-ME", "KE", "'CALL-ME' contains letters; a phone number has only digits"),
        ("0708#40000", "KE", "'0708#40000' contains characters that are not part of a phone number"),
        ("", "KE", "no phone number was given"),
        ("   ", "KE", "no phone number was given"),
    ],
)
def test_invalid_numbers_say_why(raw: str, region: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as err:
        normalize(raw, region)
    assert err.value.raw == raw
    assert err.value.reason == reason
    assert str(err.value) == reason
    assert isinstance(err.value, ValueError)


def test_invalid_number_raises_again_from_cache() -> None:
    for _ in range(3):
        with pytest.raises(InvalidNumber):
            normalize("123", "KE")


def test_carrier_name() -> None:
    assert carrier_name("254708400000") == "Safaricom"
    assert carrier_name("+9779841234567") == "Nepal Telecom"
    assert carrier_name("254202222222") is None
    assert carrier_name("not a number") is None


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        ("Ujumbe", "alphanumeric"),
        ("MyShop 24", "alphanumeric"),
        ("22141", "shortcode"),
        ("12345678", "shortcode"),
        ("123456789", "international"),
        ("254708400000", "international"),
        ("+254708400000", "international"),
        ("+254 708 400000", "international"),
        ("+22141", "international"),
    ],
)
def test_classify_sender(sender: str, kind: str) -> None:
    assert classify_sender(sender) == kind


@pytest.mark.parametrize("sender", ["", "  ", "1234567890123456"])
def test_classify_sender_refuses_nonsense(sender: str) -> None:
    with pytest.raises(ValueError):
        classify_sender(sender)
