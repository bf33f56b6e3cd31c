"""HTTP digest authentication for SIP (RFC 3261 22, RFC 2617): MD5 and
MD5-sess, with and without ``qop=auth``. Carriers' trunks challenge the
INVITE with 401 (WWW-Authenticate) or, as proxies, 407 (Proxy-Authenticate)."""

from __future__ import annotations

import hashlib
import os

from ujumbe.channels.sip.message import split_commas


class DigestError(ValueError):
    pass


def parse_challenge(value: str) -> dict[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a digest challenge: {scheme!r}")
    out: dict[str, str] = {}
    for item in split_commas(rest):
        name, _, val = item.partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        out[name.strip().lower()] = val
    if "nonce" not in out:
        raise DigestError("challenge without a nonce")
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 (the protocol's hash)


def authorization(challenge: dict[str, str], *, method: str, uri: str, username: str,
                  password: str, nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge``."""
    algorithm = challenge.get("algorithm", "MD5")
    if algorithm.upper() not in ("MD5", "MD5-SESS"):
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    realm = challenge.get("realm", "")
    nonce = challenge["nonce"]
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    cnonce = cnonce or os.urandom(8).hex()
    ha1 = _md5(f"{username}:{realm}:{password}")
    if algorithm.upper() == "MD5-SESS":
        ha1 = _md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = _md5(f"{method}:{uri}")
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if qops and "auth" not in qops:
        raise DigestError(f"unsupported qop {challenge.get('qop')!r}")
    if qops:
        ncs = f"{nc:08x}"
        response = _md5(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={ncs}", f'cnonce="{cnonce}"']
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{response}"')
        if algorithm.upper() == "MD5-SESS":
            fields.append(f'cnonce="{cnonce}"')
    fields.append(f"algorithm={algorithm}")
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)
