"""`Fields`, the schema of flat record maps (本人確認情報 in updates, provided records between the
tiers): its quick path for the common case must accept and refuse exactly what the field-by-field
checks accept and refuse."""

from __future__ import annotations

from enum import StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import Reason, Refused
from nodes.messages import Fields
from store.records import PROVIDED_FIELDS


class Colour(StrEnum):
    RED = "赤"


SPEC = Fields(PROVIDED_FIELDS, required=("resident_code", "sequence"))
LOOSE = Fields(PROVIDED_FIELDS, strict=False)

keys = st.sampled_from(PROVIDED_FIELDS) | st.text(max_size=3) | st.text(min_size=65, max_size=70)
values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.text(min_size=1999, max_size=2002)
    | st.just(Colour.RED)
    | st.binary(max_size=3)
    | st.lists(st.integers(), max_size=2)
)


def _outcome(spec: Fields, value: object, checks_only: bool) -> str | None:
    try:
        if checks_only:
            if type(value) is dict:
                spec._check(value, "p")
        else:
            spec.validate(value, "p")
    except Refused as exc:
        assert exc.reason is Reason.SCHEMA
        return exc.detail
    return None


@settings(max_examples=300)
@given(st.dictionaries(keys, values, max_size=25))
def test_the_quick_path_agrees_with_the_checks(value: dict[str, object]) -> None:
    for spec in (SPEC, LOOSE):
        assert _outcome(spec, value, False) == _outcome(spec, value, True)


def test_what_each_check_refuses() -> None:
    ok = {"resident_code": "12345678901", "sequence": 3, "name_kanji": "髙橋"}
    SPEC.validate(ok, "p")
    SPEC.validate({**ok, "record_status": Colour.RED}, "p")  # a str subclass is a scalar
    for bad, words in (
        ({**ok, "extra": 1}, "unexpected field 'extra'"),
        ({**ok, "name_kanji": "字" * 2001}, "too long"),
        ({**ok, "name_kanji": b"x"}, "expected a scalar"),
        ({"resident_code": "12345678901"}, "missing field 'sequence'"),
    ):
        with pytest.raises(Refused, match=words):
            SPEC.validate(bad, "p")
