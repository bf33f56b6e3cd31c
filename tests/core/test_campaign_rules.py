"""Campaign rules: services, re-run selections (also the document's
["failed, hungup"]), tags, spreadsheet numbers, schedules in the account's zone."""

from __future__ import annotations

import pytest

from ujumbe.core import campaigns as rules


def test_rerun_statuses_take_the_documents_one_string_form() -> None:
    assert rules.rerun_statuses(["failed, hungup"]) == ("failed", "hungup")
    assert rules.rerun_statuses(["failed", "hungup"]) == ("failed", "hungup")
    assert rules.rerun_statuses("unanswered,terminated") == ("unanswered", "terminated")
    assert rules.rerun_statuses(None) == ()
    with pytest.raises(rules.RuleError) as err:
        rules.rerun_statuses(["failed, lost"])
    assert err.value.code == "invalid_status" and "'lost'" in str(err.value)
    with pytest.raises(rules.RuleError):
        rules.rerun_statuses(["not started"])  # not a status to re-run


def test_services() -> None:
    assert rules.parse_services("SMS") == ("SMS",)
    assert rules.parse_services("phone, sms") == ("SMS", "PHONE")
    assert rules.parse_services(["PHONE", "SMS", "SMS"]) == ("SMS", "PHONE")
    for bad in ("", "FAX", []):
        with pytest.raises(rules.RuleError):
            rules.parse_services(bad)


def test_tags_render_per_number() -> None:
    message = "नमस्कार, {tags_name}, हजुर {tags_age} वर्षको हुनुहुन्छ र हजुरको सालारी {tags_salary} छ |"
    usable = ["tags_name", "tags_age", "tags_salary"]
    assert rules.render(message, {"tags_name": "Adwait", "tags_age": 25.0, "tags_salary": 5000}, usable) == (
        "नमस्कार, Adwait, हजुर 25 वर्षको हुनुहुन्छ र हजुरको सालारी 5000 छ |"
    )
    # a usable tag the number lacks is empty; braces around other names stay
    assert rules.render("Hi {tags_name}, code {otp}", {}, usable) == "Hi , code {otp}"
    assert rules.tags_in(message) == usable


def test_spreadsheet_numbers() -> None:
    assert rules.number_text(9843818700.0) == "9843818700"
    assert rules.number_text("9843818700.0") == "9843818700"
    assert rules.number_text("9.8438187E9") == "9843818700"
    assert rules.number_text(9843818700) == "9843818700"
    assert rules.number_text(" 0708400000 ") == "0708400000"
    assert rules.number_text(None) == ""


def test_schedule_is_read_in_the_accounts_zone() -> None:
    nepal = rules.zone_of(None, "NP")
    assert rules.local_iso(1683630000000, nepal) == "2023-05-09T16:45:00+05:45"  # +05:45 since 1986
    at = rules.parse_schedule("2023-05-09T17:07", nepal)
    assert rules.local_iso(at, rules.zone_of("UTC", "NP")) == "2023-05-09T11:22:00+00:00"
    # an explicit offset wins over the zone
    assert rules.parse_schedule("2023-05-09T17:07+00:00", nepal) == at + (5 * 60 + 45) * 60_000
    assert str(rules.zone_of(None, "KE")) == "Africa/Nairobi"
    assert str(rules.zone_of(None, "ZZ")) == "UTC"  # no region known: UTC
    with pytest.raises(rules.RuleError):
        rules.parse_schedule("tomorrow", nepal)
    with pytest.raises(rules.RuleError):
        rules.check_zone("Mars/Olympus")


def test_message_outcomes() -> None:
    assert rules.outcome("delivered") == "completed"
    for state in ("undelivered", "failed", "rejected", "expired"):
        assert rules.outcome(state) == "failed"


def test_the_pace_allows_half_a_second_ahead_and_saves_no_burst() -> None:
    now = 1_000_000_000_000
    # caught up (or paused for an hour): half a second of the rate, not more
    assert rules.pace_share(0, now, 20, 1000) == (10, rules.PACE_HORIZON_US)
    assert rules.pace_share(now - 3_600_000_000, now, 20, 1000)[0] == 10
    # another worker already paid up to 0.4 s ahead: 0.1 s is left
    assert rules.pace_share(now + 400_000, now, 20, 1000)[0] == 2
    assert rules.pace_share(now + 500_000, now, 20, 1000)[0] == 0
    assert rules.pace_share(0, now, 100_000, 1000)[0] == 1000  # a round's limit
    # 1 a second: the horizon is one send's time, so it sends, one at a time
    assert rules.pace_share(0, now, 1, 1000) == (1, 1_000_000)
    assert rules.pace_share(now + 1, now, 1, 1000)[0] == 0
    assert rules.pace_cost_us(1, 3) == 333_334  # rounded up: never faster than the rate
    assert rules.pace_cost_us(1000, 100_000) == 10_000
