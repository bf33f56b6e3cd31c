"""What a PHONE run plays (TingTing's priority rule), length factors as TingTing
sends them, and how a call's outcome becomes a number's status and figures."""

from __future__ import annotations

import pytest

from ujumbe.core import campaigns as rules


def plays(**kw: bool | str | None) -> bool:
    base: dict[str, bool | str | None] = {"priority": None, "new_message": False, "new_audio": False,
                                          "has_message": False, "has_audio": False}
    return rules.plays_audio(**{**base, **kw})  # type: ignore[arg-type]


def test_what_plays() -> None:
    assert plays(has_message=True) is False
    assert plays(has_audio=True) is True
    assert plays(new_audio=True, has_message=True) is True  # a new audio given plays, no priority needed
    assert plays(new_message=True, has_audio=True) is False
    assert plays(priority="audio", has_message=True, has_audio=True) is True
    assert plays(priority="Message", has_message=True, has_audio=True) is False
    for kw, code in [({"has_message": True, "has_audio": True}, "missing_priority"),
                     ({"new_message": True, "new_audio": True}, "missing_priority"),
                     ({}, "missing_text"), ({"priority": "audio", "has_message": True}, "missing_audio"),
                     ({"priority": "video", "has_message": True}, "invalid_priority")]:
        with pytest.raises(rules.RuleError) as err:
            plays(**kw)  # type: ignore[arg-type]
        assert err.value.code == code, kw


def test_length_factor_as_text_or_number() -> None:
    assert rules.length_factor("1.4", 0.39, 2.19) == 1.4
    assert rules.length_factor(1, 0.39, 2.19) == 1.0
    assert rules.length_factor(None, 0.39, 2.19) is None and rules.length_factor("", 0.39, 2.19) is None
    for bad in ("fast", "9", True, "nan", [1]):
        with pytest.raises(rules.RuleError):
            rules.length_factor(bad, 0.39, 2.19)


def test_call_outcome_to_number() -> None:
    assert [rules.call_status(o, "delivered") for o in ("completed", "hungup", "terminated")] == [
        "completed", "hungup", "terminated"]
    assert rules.call_status(None, "rejected") == "failed" and rules.call_status(None, "expired") == "failed"
    assert rules.seconds(0) == 0 and rules.seconds(1) == 1 and rules.seconds(3000) == 3 and rules.seconds(3001) == 4
    assert rules.seconds(None) is None and rules.playback_text(None) is None
    assert rules.playback_text(12_345) == "12.3" and rules.playback_text(0) == "0.0"
