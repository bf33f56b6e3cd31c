"""SIP messages (RFC 3261): parse, build, and the header grammar a caller needs.

Headers keep their order and repeat; names are kept in their long form
(compact forms such as ``v``, ``i``, ``m`` are expanded on parse), compared
case-insensitively. Values that are comma lists (Via, Route, Record-Route,
Contact) are split outside quotes and angle brackets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "r": "refer-to", "b": "referred-by", "o": "event", "u": "allow-events",
    "x": "session-expires", "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
}

# Canonical spellings for the headers we write; others are written as received.
CANON = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "content-length": "Content-Length", "content-type": "Content-Type", "max-forwards": "Max-Forwards",
    "record-route": "Record-Route", "proxy-authenticate": "Proxy-Authenticate",
    "proxy-authorization": "Proxy-Authorization", "user-agent": "User-Agent",
}

LIST_HEADERS = {"via", "route", "record-route", "contact", "allow", "supported"}

SECRET_HEADERS = ("authorization", "proxy-authorization")


class SipParseError(ValueError):
    pass


def canon(name: str) -> str:
    low = name.lower()
    return CANON.get(low) or "-".join(p.capitalize() for p in low.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value at commas that are not inside quotes or <>."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    last = value[start:].strip()
    if last:
        out.append(last)
    return [v for v in out if v]


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;lr;b="x y"`` -> {"a": "1", "lr": "", "b": "x y"} (names lowercased)."""
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, val = part.partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        params[name.strip().lower()] = val
    return params


@dataclass(slots=True)
class Uri:
    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str]
    raw: str

    @classmethod
    def parse(cls, raw: str) -> Uri:
        raw = raw.strip()
        scheme, sep, rest = raw.partition(":")
        if not sep or scheme.lower() not in ("sip", "sips", "tel"):
            raise SipParseError(f"not a SIP URI: {raw!r}")
        rest, _, _headers = rest.partition("?")
        hostpart, _, ptext = rest.partition(";")
        user = ""
        if "@" in hostpart:
            user, _, hostpart = hostpart.rpartition("@")
        host, port = split_hostport(hostpart)
        return cls(scheme.lower(), user, host, port, parse_params(ptext), raw)

    def addr(self, default_port: int = 5060) -> tuple[str, int]:
        host = self.params.get("maddr") or self.host
        return host, self.port or default_port


def split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):  # IPv6 reference
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, _, port = text.partition(":")
    return host, int(port) if port.isdigit() else None


@dataclass(slots=True)
class NameAddr:
    """``"Name" <sip:u@h>;tag=x`` or ``sip:u@h;tag=x`` (then URI params are header params)."""

    display: str
    uri: str
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        value = value.strip()
        lt = _find_unquoted(value, "<")
        if lt >= 0:
            gt = value.find(">", lt)
            if gt < 0:
                raise SipParseError(f"unterminated <> in {value!r}")
            display = value[:lt].strip().strip('"')
            return cls(display, value[lt + 1 : gt].strip(), parse_params(value[gt + 1 :]))
        uri, _, ptext = value.partition(";")
        return cls("", uri.strip(), parse_params(ptext))

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")


def _find_unquoted(text: str, ch: str) -> int:
    quoted = False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c == ch and not quoted:
            return i
    return -1


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> Via:
        m = re.match(r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(.*)$", value, re.S)
        if not m:
            raise SipParseError(f"bad Via: {value!r}")
        host, port = split_hostport(m.group(2))
        return cls(m.group(1).upper(), host, port, parse_params(m.group(3)))

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")


@dataclass(slots=True)
class SipMessage:
    method: str = ""  # a request's method; "" for a response
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lowercase long name, value)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str, default: str = "") -> str:
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, list headers split at their commas, in order."""
        name = name.lower()
        out: list[str] = []
        for n, v in self.headers:
            if n == name:
                out.extend(split_commas(v) if name in LIST_HEADERS else [v])
        return out

    @property
    def call_id(self) -> str:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        num, _, method = self.get("cseq").strip().partition(" ")
        try:
            return int(num), method.strip().upper()
        except ValueError:
            raise SipParseError(f"bad CSeq: {self.get('cseq')!r}") from None

    @property
    def top_via(self) -> Via:
        vias = self.get_all("via")
        if not vias:
            raise SipParseError("no Via")
        return Via.parse(vias[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.get("from"))

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.get("to"))

    def first_line(self) -> str:
        if self.method:
            return f"{self.method} {self.uri} SIP/2.0"
        return f"SIP/2.0 {self.status} {self.reason}"

    def encode(self) -> bytes:
        lines = [self.first_line()]
        for n, v in self.headers:
            if n != "content-length":
                lines.append(f"{canon(n)}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def redacted(self) -> str:
        """The message as text with credentials' values hidden, for exchange logs."""
        lines = [self.first_line()]
        for n, v in self.headers:
            if n in SECRET_HEADERS:
                scheme = v.split(" ", 1)[0]
                user = re.search(r'username="[^"]*"', v)
                v = f"{scheme} {user.group(0) + ', ' if user else ''}[redacted]"
            lines.append(f"{canon(n)}: {v}")
        text = "\r\n".join(lines)
        if self.body:
            text += "\r\n\r\n" + self.body.decode("utf-8", "replace")
        return text


def parse(data: bytes) -> SipMessage:
    """One whole message (a datagram, or a frame cut by ``frame_length``)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise SipParseError("empty message")
    msg = SipMessage()
    first = lines[0].strip()
    if first.startswith("SIP/2.0 "):
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipParseError(f"bad status line: {first!r}")
        msg.status = int(parts[1])
        msg.reason = parts[2] if len(parts) > 2 else ""
    else:
        parts = first.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
            raise SipParseError(f"bad request line: {first!r}")
        msg.method, msg.uri = parts[0].upper(), parts[1]
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and msg.headers:  # folded continuation
            n, v = msg.headers[-1]
            msg.headers[-1] = (n, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            if line.strip():
                raise SipParseError(f"bad header line: {line!r}")
            continue
        name = name.strip().lower()
        msg.headers.append((COMPACT.get(name, name), value.strip()))
    length = msg.get("content-length")
    if length.strip().isdigit():
        body = body[: int(length)]
    msg.body = body
    return msg


_CL = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


def frame_length(buf: bytes | bytearray) -> int | None:
    """For a stream (TCP): the length of the first whole message in ``buf``
    (after any leading CRLF keepalives, which the caller strips), or None
    while it is incomplete. A message without Content-Length on a stream
    has an empty body (RFC 3261 18.3)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    m = _CL.search(bytes(buf[:end + 2]))
    total = end + 4 + (int(m.group(1)) if m else 0)
    return total if len(buf) >= total else None


def response_to(req: SipMessage, status: int, reason: str, *, to_tag: str = "",
                source: tuple[str, int] | None = None, extra: list[tuple[str, str]] | None = None,
                body: bytes = b"", content_type: str = "") -> SipMessage:
    """A response to ``req`` (RFC 3261 8.2.6): its Vias (the top one marked
    with the address it came from, RFC 3581), From, To (+ our tag), Call-ID, CSeq."""
    headers: list[tuple[str, str]] = []
    first = True
    for v in req.get_all("via"):
        if first and source is not None:
            v = _mark_via(v, source)
        first = False
        headers.append(("via", v))
    to = req.get("to")
    if to_tag and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    headers += [("from", req.get("from")), ("to", to), ("call-id", req.call_id), ("cseq", req.get("cseq"))]
    headers += extra or []
    if body:
        headers.append(("content-type", content_type))
    return SipMessage(status=status, reason=reason, headers=headers, body=body)


def _mark_via(value: str, source: tuple[str, int]) -> str:
    via = Via.parse(value)
    out = value
    if via.host != source[0]:
        out += f";received={source[0]}"
    if "rport" in via.params and not via.params["rport"]:
        out = re.sub(r";\s*rport(?=;|$)", f";rport={source[1]}", out, count=1)
    return out
