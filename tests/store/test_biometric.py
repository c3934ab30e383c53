"""The cancelable biometric transform (store/biometric.py): shape, determinism, separation of
genuine and impostor captures, cancelability by re-keying, and that nothing of the sample's
magnitude survives."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import biometric as b

features = st.lists(
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    min_size=b.FEATURE_DIM,
    max_size=b.FEATURE_DIM,
)
keys = st.binary(min_size=b.KEY_BYTES, max_size=b.KEY_BYTES)


@settings(max_examples=40, deadline=None)
@given(features, keys)
def test_template_is_deterministic_sized_and_scale_free(x: list[float], key: bytes) -> None:
    t = b.transform(x, key)
    assert len(t) == b.TEMPLATE_BYTES and b.transform(x, key) == t
    # only signs of projections survive: scaling the sample changes nothing
    assert b.transform([v * 3.5 for v in x], key) == t


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_hamming_is_a_metric_on_templates(a: bytes, c: bytes) -> None:
    assert b.hamming(a, a) == 0
    assert (
        b.hamming(a, c) == b.hamming(c, a) == bin(int.from_bytes(a) ^ int.from_bytes(c)).count("1")
    )


def test_genuine_captures_match_and_strangers_do_not() -> None:
    rng = random.Random(5)
    key = b.new_key()
    hand = b.synthetic_hand("alice")
    template = b.transform(b.synthetic_capture(hand, rng), key)
    assert all(b.matches(b.synthetic_capture(hand, rng), key, template) for _ in range(30))
    strangers = [b.synthetic_hand(f"s{i}") for i in range(30)]
    assert not any(b.matches(b.synthetic_capture(s, rng), key, template) for s in strangers)


def test_reissuing_the_key_cancels_the_old_template() -> None:
    rng = random.Random(6)
    hand = b.synthetic_hand("bob")
    old = b.transform(b.synthetic_capture(hand, rng), b.new_key())
    assert not b.matches(b.synthetic_capture(hand, rng), b.new_key(), old)


def test_malformed_samples_are_refused() -> None:
    with pytest.raises(b.BiometricError):
        b.transform([0.0] * (b.FEATURE_DIM - 1), bytes(32))
    with pytest.raises(b.BiometricError):
        b.transform([float("nan")] * b.FEATURE_DIM, bytes(32))
    with pytest.raises(b.BiometricError):
        b.transform([0.0] * b.FEATURE_DIM, bytes(31))
