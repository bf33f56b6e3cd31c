"""Email addresses: what is accepted, how it is stored, and why one is refused."""

from __future__ import annotations

import pytest

from ujumbe.core import emails


@pytest.mark.parametrize(("raw", "stored"), [
    ("Wanjiru.K@Duka.co.ke", "Wanjiru.K@duka.co.ke"),  # the local part is the receiver's to interpret
    ("  info@example.org ", "info@example.org"),
    ("info@bücher.de", "info@xn--bcher-kva.de"),  # IDNA
    ("राम@उदाहरण.भारत", "राम@xn--p1b6ci4b4b3a.xn--h2brj9c"),  # a UTF-8 local part (SMTPUTF8)
    ("o'brien+orders@example.ie", "o'brien+orders@example.ie"),
    ("user@example.org.", "user@example.org"),
])
def test_valid_addresses(raw: str, stored: str) -> None:
    assert emails.normalize(raw).address == stored


@pytest.mark.parametrize(("raw", "words"), [
    ("", "empty"),
    ("not an address", "bare address"),
    ("Jane <jane@example.org>", "bare address"),
    ("jane@@example.org", "exactly one"),
    ("a@b@example.org", "exactly one"),
    ("@example.org", "nothing before"),
    ("jane@", "domain is empty"),
    ("jane@localhost", "no dot"),
    ("jane@exa_mple.org", "not a valid domain"),
    ("jane@-example.org", "not a valid domain"),
    ("jane..doe@example.org", "characters"),
    (".jane@example.org", "characters"),
    ("jane@1.2.3.4", "address literal"),
    ("x" * 65 + "@example.org", "64 bytes"),
    ("jane@" + "a" * 250 + ".org", "not a valid domain"),
])
def test_invalid_addresses_say_why(raw: str, words: str) -> None:
    with pytest.raises(emails.InvalidAddress) as exc:
        emails.normalize(raw)
    assert words in exc.value.reason


def test_only_addresses_look_like_email() -> None:
    assert emails.looks_like_email("jane@example.org") and not emails.looks_like_email("0708400000")
