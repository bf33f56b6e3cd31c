"""Templates as clients write them, in both placeholder styles."""

from __future__ import annotations

import pytest

from ujumbe.core.templates import TemplateError, placeholders, render


def test_dollar_brace_form() -> None:
    assert render("Hi ${name}, code ${code}", {"name": "Amina", "code": 4821}) == "Hi Amina, code 4821"


def test_brace_form() -> None:
    assert render("Hi {name}, code {code}", {"name": "Amina", "code": 4821}) == "Hi Amina, code 4821"


def test_both_forms_in_one_template() -> None:
    assert render("${greeting} {name}!", {"greeting": "Habari", "name": "Juma"}) == "Habari Juma!"


def test_names_with_dots_and_dashes_are_flat_keys() -> None:
    assert render("{user.first-name} ${order_id}", {"user.first-name": "Ana", "order_id": 7}) == "Ana 7"


def test_none_renders_empty_and_values_are_stringified() -> None:
    assert render("[{a}][{b}][{c}]", {"a": None, "b": 1.5, "c": True}) == "[][1.5][True]"


def test_non_placeholder_braces_are_left_alone() -> None:
    text = 'Use { } or {1a} or {} or ${ x} or $5 or {"k": 1}'
    assert placeholders(text) == []
    assert render(text, {}) == text


def test_dollar_without_brace_form_keeps_dollar() -> None:
    assert render("Pay $ {amount}", {"amount": 10}) == "Pay $ 10"


def test_placeholders_in_order_and_unique() -> None:
    assert placeholders("{b} ${a} {b} ${c} {a}") == ["b", "a", "c"]


def test_missing_names_are_all_listed() -> None:
    with pytest.raises(TemplateError) as err:
        render("Hi ${name}, your {item} is {status}", {"item": "order"})
    assert err.value.missing == ["name", "status"]
    assert "name" in str(err.value) and "status" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_extra_params_are_ignored() -> None:
    assert render("Hi {name}", {"name": "Wanjiru", "unused": 1}) == "Hi Wanjiru"


def test_rendered_values_are_not_rerendered() -> None:
    # A value that looks like a placeholder must come out verbatim, not expand again.
    assert render("{a}", {"a": "{b}", "b": "x"}) == "{b}"
