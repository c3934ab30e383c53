"""通番 (message ids): 26-character Crockford base32 ULIDs, sortable by creation time.

A ULID is 48 bits of milliseconds since the epoch followed by 80 random bits. Ids sort by time
as plain strings, so logs, inbox tables and dead-letter queues order naturally. Within one process
ids are strictly increasing even when many are made in the same millisecond (or the wall clock
steps back): the random part of the previous id is then incremented instead of redrawn, as the
ULID specification's monotonic mode does. The replay guard compares ids as strings, so only the
canonical upper-case form is accepted by `is_message_id`.
"""

from __future__ import annotations

import re
import threading
import time

from broker.crypto import public_random

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26
_TIME_CHARS = 10
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_TIME_MAX = (1 << 48) - 1
_DECODE = {ch: i for i, ch in enumerate(ALPHABET)}
# 26 chars x 5 bits = 130 bits, so the first character carries only the top 3 bits (0-7).
_ID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # 10 bits → 2 characters
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    # 130 bits (2 zero padding bits + 128) as 13 ten-bit pairs: one table lookup per 2 chars.
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_message_id(*, now_ms: int | None = None) -> str:
    """A fresh ULID, strictly greater than every id this process made before.

    `now_ms` overrides the wall clock (tests of a clock stepping back). Thread-safe. If the 80-bit
    random part would overflow within one millisecond (2**80 ids), the id borrows the next
    millisecond rather than wrapping, so monotonicity still holds.
    """
    global _last_ms, _last_random
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    # drawn before taking the lock: a refill of the pool (an OS call) must not hold it
    fresh = int.from_bytes(public_random(10), "big")
    with _lock:
        if now_ms > _last_ms:
            ms = now_ms
            rand = fresh
        else:
            ms = _last_ms
            rand = _last_random + 1
            if rand > _RANDOM_MAX:
                ms += 1
                rand = fresh
        if ms > _TIME_MAX:
            raise OverflowError("ULID time component exhausted (year 10889)")
        _last_ms = ms
        _last_random = rand
    return _encode((ms << _RANDOM_BITS) | rand)


def first_id_at(time_ms: int) -> str:
    """The smallest id made at `time_ms`: every id made earlier sorts below it, every id made
    then or later sorts at or above it (a store cuts its inbox at a time with it)."""
    if not 0 <= time_ms <= _TIME_MAX:
        raise ValueError(f"time outside the ULID range: {time_ms}")
    return _encode(time_ms << _RANDOM_BITS)


def is_message_id(value: object) -> bool:
    """True for a canonical (upper-case, 26-character) ULID string."""
    return type(value) is str and len(value) == ID_LENGTH and _ID_RE.fullmatch(value) is not None


def id_time_ms(msg_id: str) -> int:
    """The creation time (ms since the epoch) encoded in a message id.

    Raises:
        ValueError: `msg_id` is not a canonical ULID.
    """
    if not is_message_id(msg_id):
        raise ValueError(f"not a message id: {msg_id!r}")
    value = 0
    for ch in msg_id[:_TIME_CHARS]:
        value = (value << 5) | _DECODE[ch]
    # 10 chars = 50 bits; the top two are the ULID's padding and always zero for valid ids.
    return value
