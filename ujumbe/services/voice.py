"""What a SIP connector is made of: a trunk that carries voice messages (calls).

A connector of kind ``sip`` keeps its address in ``host``/``port``, the
digest username in ``system_id`` and the password sealed at rest like every
connector's; the rest in ``options``: ``transport`` (udp, tcp), ``from_user``
and ``from_domain`` (the caller id and domain when a message gives none),
``max_calls`` (calls at once), ``cps`` (calls started per second),
``ring_timeout_s`` (CANCEL after), ``max_duration_s`` (BYE after).
"""

from __future__ import annotations

from typing import Any

from ujumbe.core.errors import Invalid
from ujumbe.services.emails import check_address

SIP_OPTIONS: dict[str, tuple[type | tuple[type, ...], float, float]] = {
    # name: (type, lowest, highest) for numbers; strings are checked below
    "max_calls": (int, 1, 10_000),
    "cps": ((int, float), 0.01, 1_000),
    "ring_timeout_s": ((int, float), 1, 300),
    "max_duration_s": ((int, float), 1, 4 * 3600),
    "rtp_inactivity_s": ((int, float), 1, 600),
}
SIP_TEXT_OPTIONS = ("transport", "from_user", "from_domain", "local_host")
TRANSPORTS = ("udp", "tcp")
DEFAULT_MAX_CALLS = 10


def check_sip_connector(c: dict[str, Any]) -> None:
    check_address(c)
    options = c.get("options") or {}
    if not isinstance(options, dict):
        raise Invalid("'options' must be an object", code="invalid_connector")
    for k, v in options.items():
        if k in SIP_OPTIONS:
            kind, low, high = SIP_OPTIONS[k]
            if isinstance(v, bool) or not isinstance(v, kind) or not low <= v <= high:
                raise Invalid(f"SIP option '{k}' must be a number {low:g}-{high:g}", code="invalid_connector")
        elif k in SIP_TEXT_OPTIONS:
            if not isinstance(v, str) or len(v) > 255 or any(ch in v for ch in " \r\n<>\"@"):
                raise Invalid(f"SIP option '{k}' must be a short text without spaces", code="invalid_connector")
        else:
            raise Invalid(f"SIP options are {', '.join([*SIP_TEXT_OPTIONS, *SIP_OPTIONS])}", code="invalid_connector")
    if options.get("transport", "udp") not in TRANSPORTS:
        raise Invalid(f"SIP 'transport' is {' or '.join(TRANSPORTS)}", code="invalid_connector")


def trunk_settings(row: dict[str, Any], password: str) -> dict[str, Any]:
    """The SIP trunk's configuration (channels/sip TrunkConfig fields) from a connector row."""
    opts = dict(row.get("options") or {})
    return {
        "host": row["host"], "port": int(row["port"]), "transport": opts.pop("transport", "udp"),
        "username": row.get("system_id") or "", "password": password,
        "max_calls": int(opts.pop("max_calls", DEFAULT_MAX_CALLS)), **opts,
    }
