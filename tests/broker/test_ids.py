"""Message ids: ULID layout, time decoding, monotonicity across threads and within a millisecond."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import ids
from broker.ids import ALPHABET, first_id_at, id_time_ms, is_message_id, new_message_id


def _crockford_encode(value: int) -> str:
    # Independent reference: big-endian base32 of a 130-bit zero-padded number.
    bits = format(value, "0130b")
    return "".join(ALPHABET[int(bits[i : i + 5], 2)] for i in range(0, 130, 5))


def test_known_answer_ulid_time_prefix() -> None:
    # The ULID spec's seed-time example: ulid(1469918176385) == "01ARYZ6S41TSV4RRFFQ69G5FAV".
    assert id_time_ms("01ARYZ6S41TSV4RRFFQ69G5FAV") == 1469918176385


def test_new_id_is_canonical_and_carries_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    msg_id = new_message_id()
    after = time.time_ns() // 1_000_000
    assert len(msg_id) == 26 and is_message_id(msg_id)
    # Within a burst in the same ms the time part can run ahead of the clock by at most a tick.
    assert before <= id_time_ms(msg_id) <= after + 1


def test_ids_are_strictly_increasing_within_one_millisecond() -> None:
    batch = [new_message_id() for _ in range(5000)]
    assert batch == sorted(batch)
    assert len(set(batch)) == len(batch)
    times = [id_time_ms(i) for i in batch]
    # Many ids share a millisecond, which is exactly the case the monotonic mode handles.
    assert len(set(times)) < len(batch)


def test_clock_stepping_back_keeps_ids_monotonic() -> None:
    first = new_message_id()
    second = new_message_id(now_ms=time.time_ns() // 1_000_000 - 3_600_000)
    assert second > first
    assert id_time_ms(second) >= id_time_ms(first)


def test_threads_never_get_duplicate_or_unordered_ids() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def worker(out: list[str]) -> None:
        for _ in range(3000):
            out.append(new_message_id())

    threads = [threading.Thread(target=worker, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for r in results for i in r]
    assert len(set(everything)) == len(everything)
    for r in results:
        assert r == sorted(r)


@given(st.integers(min_value=0, max_value=2**48 - 1), st.integers(0, 2**80 - 1))
def test_time_round_trips_through_the_encoding(ms: int, rand: int) -> None:
    encoded = _crockford_encode((ms << 80) | rand)
    assert is_message_id(encoded)
    assert id_time_ms(encoded) == ms
    assert ids._encode((ms << 80) | rand) == encoded


@given(
    st.integers(min_value=0, max_value=2**48 - 1),
    st.integers(0, 2**80 - 1),
    st.integers(min_value=0, max_value=2**48 - 1),
)
def test_first_id_at_cuts_ids_by_the_time_they_were_made(ms: int, rand: int, cut: int) -> None:
    # the inbox purge deletes ids sorting below first_id_at(cut): exactly those made before cut
    msg_id = _crockford_encode((ms << 80) | rand)
    floor = first_id_at(cut)
    assert is_message_id(floor) and id_time_ms(floor) == cut
    assert (msg_id < floor) == (ms < cut)


def test_first_id_at_refuses_times_outside_the_ulid_range() -> None:
    with pytest.raises(ValueError):
        first_id_at(-1)
    with pytest.raises(ValueError):
        first_id_at(2**48)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 chars
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",  # 27 chars
        "01arz3ndektsv4rrffq69g5fav",  # lower case is not canonical
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",  # U is not in Crockford's alphabet
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",  # more than 128 bits
    ],
)
def test_non_canonical_ids_are_rejected(bad: str) -> None:
    assert not is_message_id(bad)
    with pytest.raises(ValueError):
        id_time_ms(bad)


def test_non_strings_are_not_ids() -> None:
    assert not is_message_id(b"01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert not is_message_id(None)
