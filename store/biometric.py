"""照合情報 (biometric matching information): the cancelable transform of a vein-style sample.

Juki-net terminals authenticate operators by 照合情報: "information made by an irreversible
transform of hand-vein biometrics" (cards.md §5). We never keep the sample. At enrolment the CS
draws a fresh random key and keeps only ``(key, template)``, where the template is a
*BioHashing*-style transform (Teoh, Ngo & Goh 2004; also known as sign random projection,
Charikar 2002):

1. project the feature vector on ``TEMPLATE_BITS`` pseudo-random Gaussian directions generated
   from the key (a keyed random projection);
2. keep only the sign of each projection (binarisation) — the magnitudes are thrown away, which
   is what makes the template useless for rebuilding the sample;
3. compare two templates by Hamming distance; accept at ``THRESHOLD`` differing bits or fewer.

Cancelable: re-enrolment draws a new key, and a template made under the old key says nothing
about the new one (distances between templates under different keys are those of strangers).

For two feature vectors at angle θ each bit differs with probability θ/π, so a genuine
re-capture (small θ) lands far below the threshold and a stranger (θ ≈ π/2) lands near
``TEMPLATE_BITS / 2``; bench/biometric.py measures the false accept / reject rates.

The synthetic hands at the end are the emulation's stand-in for real people (no real biometric
data anywhere): a per-person seed gives a stable feature vector, each capture adds noise.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from functools import lru_cache

FEATURE_DIM = 64
"""Length of a sample's feature vector (what a sensor SDK would hand over)."""
TEMPLATE_BITS = 256
"""Bits in a template (one per projection)."""
TEMPLATE_BYTES = TEMPLATE_BITS // 8
KEY_BYTES = 32
THRESHOLD = 72
"""Accept when at most this many of the 256 bits differ (28 %); see bench/biometric.py."""
CAPTURE_NOISE = 0.30
"""Relative noise of one emulated capture (per feature, against a unit-variance hand)."""

_CONTEXT = b"juki-biohash-v1\x00"


class BiometricError(ValueError):
    """A sample or template of the wrong shape."""

    title = "生体情報の形式エラー"


def new_key() -> bytes:
    """A fresh transform key (one per enrolment; a new one cancels the old template)."""
    return random.SystemRandom().randbytes(KEY_BYTES)


@lru_cache(maxsize=256)
def _projection(key: bytes) -> tuple[tuple[float, ...], ...]:
    # One Gaussian direction per template bit, from a PRNG seeded by a hash of the key, so the
    # same key always gives the same directions and different keys independent ones.
    seed = int.from_bytes(hashlib.blake2b(_CONTEXT + key, digest_size=32).digest(), "big")
    rng = random.Random(seed)
    return tuple(
        tuple(rng.gauss(0.0, 1.0) for _ in range(FEATURE_DIM)) for _ in range(TEMPLATE_BITS)
    )


def check_features(features: Sequence[float]) -> None:
    if len(features) != FEATURE_DIM:
        raise BiometricError(f"a sample has {FEATURE_DIM} features, got {len(features)}")
    if not all(isinstance(x, float | int) and math.isfinite(x) for x in features):
        raise BiometricError("features must be finite numbers")


def transform(features: Sequence[float], key: bytes) -> bytes:
    """The template of ``features`` under ``key`` (TEMPLATE_BYTES bytes)."""
    check_features(features)
    if len(key) != KEY_BYTES:
        raise BiometricError(f"a transform key has {KEY_BYTES} bytes")
    bits = 0
    for row in _projection(key):
        bits = (bits << 1) | (sum(w * x for w, x in zip(row, features, strict=True)) >= 0.0)
    return bits.to_bytes(TEMPLATE_BYTES, "big")


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two templates."""
    if len(a) != TEMPLATE_BYTES or len(b) != TEMPLATE_BYTES:
        raise BiometricError(f"templates have {TEMPLATE_BYTES} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def matches(
    features: Sequence[float], key: bytes, template: bytes, threshold: int = THRESHOLD
) -> bool:
    """True when a fresh sample matches the enrolled template."""
    return hamming(transform(features, key), template) <= threshold


# --- synthetic hands (the emulation's people; no real biometrics anywhere) -------------------


def synthetic_hand(person: str) -> tuple[float, ...]:
    """The stable feature vector of an emulated person (a unit-variance Gaussian vector)."""
    seed = int.from_bytes(
        hashlib.blake2b(b"juki-hand\x00" + person.encode(), digest_size=16).digest(), "big"
    )
    rng = random.Random(seed)
    return tuple(rng.gauss(0.0, 1.0) for _ in range(FEATURE_DIM))


def synthetic_capture(
    hand: Sequence[float], rng: random.Random, noise: float = CAPTURE_NOISE
) -> list[float]:
    """One capture of ``hand``: the hand plus independent Gaussian noise per feature."""
    return [x + rng.gauss(0.0, noise) for x in hand]
