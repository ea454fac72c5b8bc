"""fastjson: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json
import math

from cronwarden import fastjson


def test_it_writes_compact_json_the_standard_library_reads_back() -> None:
    value = {"a": 1, "b": [1.5, None, True], "c": "é", "d": {"e": "x"}}
    text = fastjson.dumps(value)
    assert isinstance(text, str) and " " not in text
    assert json.loads(text) == value == fastjson.loads(text)


def test_integers_wider_than_64_bits_survive_both_ways() -> None:
    huge = {"rows": 2 ** 70, "neg": -(2 ** 64) - 1}  # job metadata may hold anything JSON can
    text = fastjson.dumps(huge)
    assert json.loads(text) == huge
    assert fastjson.loads(text) == huge  # orjson alone would read a float
    assert fastjson.loads('{"a":123456789012345678901234567890}')["a"] == 123456789012345678901234567890


def test_nan_is_written_as_null_and_read_where_the_standard_library_wrote_it() -> None:
    assert fastjson.dumps({"x": float("nan"), "y": float("inf")}) == '{"x":null,"y":null}'
    assert math.isnan(fastjson.loads(json.dumps({"x": float("nan")}))["x"])
