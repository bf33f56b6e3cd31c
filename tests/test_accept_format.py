"""The hand-made formats on the accept path say what the library calls did."""

from __future__ import annotations

import datetime as dt
import random
import uuid

from ujumbe.dialects.native import iso
from ujumbe.services.messaging import new_request_id


def test_iso_is_datetimes_isoformat_in_milliseconds() -> None:
    rng = random.Random(5)
    for ms in [0, 999, 1000, 1763850000123, 4102444799999, *(rng.randrange(0, 4102444800000) for _ in range(20000))]:
        expected = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")
        assert iso(ms) == expected.replace("+00:00", "Z"), ms
    assert iso(None) is None


def test_request_ids_are_uuid7_in_time_order() -> None:
    ids = [new_request_id() for _ in range(2000)]
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 7 and u.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)
    stamps = [int(t.replace("-", "")[:12], 16) for t in ids]
    assert stamps == sorted(stamps)
