"""Email addresses: validation and normalisation (pure, no DNS).

An address is accepted in the form people and clients actually send
(``Wanjiru.K@Duka.co.ke``, an internationalised domain ``info@bücher.de``,
a UTF-8 local part) and stored normalised: the domain lower-cased and in its
IDNA (punycode) form, the local part as written (RFC 5321 lets the receiving
server decide whether it is case-sensitive). Anything with a display name,
spaces, several ``@`` or no dot in the domain is refused with the reason, the
way ``core.numbers`` refuses a bad phone number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ADDRESS = 254  # RFC 5321 path limit less the angle brackets
MAX_LOCAL = 64
# Limits for one email message's content: far above any notification, low
# enough that one request cannot make the dispatcher build huge messages.
MAX_SUBJECT = 998  # one header line (RFC 5322)
MAX_TEXT = 256 * 1024
MAX_HTML = 512 * 1024

# dot-atom local part (RFC 5322 atext) plus any non-ASCII letter (RFC 6531)
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidAddress(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str  # lower case, IDNA (xn--) form

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


def looks_like_email(value: str) -> bool:
    """Whether a recipient is meant as an email address (has an ``@``)."""
    return "@" in value


def normalize_domain(raw: str) -> str:
    domain = raw.strip().rstrip(".").lower()
    if not domain:
        raise InvalidAddress("the domain is empty")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise InvalidAddress(f"'{raw}' is not a valid domain name") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise InvalidAddress(f"'{raw}' is not a domain one can send to (no dot)")
    if len(ascii_domain) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidAddress(f"'{raw}' is not a valid domain name")
    if labels[-1].isdigit():
        raise InvalidAddress(f"'{raw}' is an address literal, not a domain")
    return ascii_domain


def normalize(raw: str) -> Address:
    """The address in its stored form, or ``InvalidAddress`` with the reason."""
    value = raw.strip()
    if not value:
        raise InvalidAddress("the address is empty")
    if any(c.isspace() for c in value) or "<" in value or ">" in value:
        raise InvalidAddress(f"'{value}' is not a bare address (no spaces, names or <>)")
    if value.count("@") != 1:
        raise InvalidAddress(f"'{value}' must have exactly one '@'")
    local, domain = value.split("@")
    if not local:
        raise InvalidAddress(f"'{value}' has nothing before the '@'")
    if len(local.encode()) > MAX_LOCAL:
        raise InvalidAddress(f"'{value}': the part before '@' is longer than {MAX_LOCAL} bytes")
    if not _LOCAL.match(local):
        raise InvalidAddress(f"'{value}': the part before '@' has characters an address cannot have")
    addr = Address(local, normalize_domain(domain))
    if len(addr.address.encode()) > MAX_ADDRESS:
        raise InvalidAddress(f"'{value}' is longer than {MAX_ADDRESS} bytes")
    return addr
