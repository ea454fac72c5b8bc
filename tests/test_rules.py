"""The metadata rule grammar."""

from __future__ import annotations

import pytest

from cronwarden.rules import RuleError, parse_rule


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ("records == 0", {"records": 0}, True),
        ("records == 0", {"records": 3}, False),
        ("records == 0", {}, False),  # a missing field never matches
        ("records != 0", {}, False),
        ("errors > 0", {"errors": 2}, True),
        ("errors >= 2.5", {"errors": 2}, False),
        ("ratio < 0.5", {"ratio": 0.25}, True),
        ("status == 'partial'", {"status": "partial"}, True),
        ('status != "ok"', {"status": "ok"}, False),
        ("complete == false", {"complete": False}, True),
        ("complete == true", {"complete": 1}, False),  # a number is not a boolean
        ("records < 10", {"records": "5"}, False),  # nor is a string a number
        ("a == 1 and b == 2", {"a": 1, "b": 2}, True),
        ("a == 1 and b == 2", {"a": 1, "b": 3}, False),
        ("a == 1 or b == 2", {"a": 0, "b": 2}, True),
        ("(a == 1 or a == 2) and b > 0", {"a": 2, "b": 1}, True),
        ("a == 1 or a == 2 and b > 0", {"a": 1, "b": 0}, True),  # and binds tighter
        ("failed_records > 0", {"failed_records": 4, "exit": 0}, True),
    ],
)
def test_rules_match_as_written(rule: str, data: dict, expected: bool) -> None:  # type: ignore[type-arg]
    assert parse_rule(rule).matches(data) is expected


@pytest.mark.parametrize(
    ("rule", "col"),
    [
        ("", 0),
        ("records", 7),
        ("records ==", 10),
        ("records => 0", 8),
        ("records == zero", 11),
        ("(a == 1", 7),
        ("a == 1 b == 2", 7),
        ("a == 1 and", 10),
        ("== 1", 0),
        ("a == 1 $", 7),
    ],
)
def test_bad_rules_are_refused_with_the_column_of_the_problem(rule: str, col: int) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    assert info.value.col == col
    assert str(info.value)
