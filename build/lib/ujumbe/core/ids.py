"""Operator message ids. SMSCs disagree on whether an id is hex or decimal
(some answer submit_sm in one and write receipts in the other), so a receipt
is matched against every reading of its id."""

from __future__ import annotations

import string

_HEX = frozenset(string.hexdigits)


def id_variants(op_id: str) -> list[str]:
    op_id = op_id.strip()
    out = [op_id]
    if op_id.isdigit():
        out.append(format(int(op_id), "x"))
        out.append(format(int(op_id), "X"))
        out.append(str(int(op_id)))
    if op_id and all(c in _HEX for c in op_id) and len(op_id) <= 32:
        out.append(str(int(op_id, 16)))
        out.append(op_id.lower().lstrip("0") or "0")
        out.append(op_id.upper().lstrip("0") or "0")
    return list(dict.fromkeys(out))
