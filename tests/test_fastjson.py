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


def test_what_orjson_refuses_goes_through_the_standard_library() -> None:
    huge = {"rows": 2 ** 70}  # job metadata may hold anything JSON can
    assert json.loads(fastjson.dumps(huge)) == huge
    text = json.dumps({"x": float("nan")})
    assert math.isnan(fastjson.loads(text)["x"])
