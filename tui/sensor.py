"""生体センサー (biometric sensor): what the terminal needs from a hand-vein reader.

`BiometricSensor` is the seam a vendor SDK would implement: one blocking ``capture`` returning a
fixed-length feature vector (the SDK's own feature extraction; the raw image never leaves it).
Without hardware, `EmulatedSensor` plays the person standing at the counter: a per-person seed
gives a stable synthetic hand (store.biometric.synthetic_hand) and each capture adds noise, so a
genuine capture matches the enrolled template and anyone else's does not. The sample is handed
straight to the CS in a sealed request and is never logged or kept.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Protocol

from store.biometric import CAPTURE_NOISE, FEATURE_DIM, synthetic_capture, synthetic_hand


class SensorError(Exception):
    """No usable capture; ``title`` is shown on the screen."""

    title = "生体情報を読み取れませんでした"
    hint = "手のひらをセンサーにかざして、もう一度お試しください。"


@dataclass(frozen=True, slots=True)
class Sample:
    """One capture's features. ``repr`` hides them: a sample is never logged."""

    features: tuple[float, ...] = field(repr=False)


class BiometricSensor(Protocol):
    """A hand-vein sensor. ``capture`` blocks (call it from a worker thread).

    ``claimed`` is the 操作者ID being verified or enrolled (1:1 照合); an SDK may use it or not.
    """

    name: str

    def capture(self, claimed: str | None = None, timeout: float = 10.0) -> Sample: ...


class EmulatedSensor:
    """The emulation's sensor: `present(person)` puts someone's hand on it.

    Args:
        person: who is at the sensor now. None means "the person who is claimed": the operator
            whose card was just read (login) or who is being enrolled — the honest case. Tests
            present someone else to play an impostor.
        noise: per-feature noise of one capture.
        seed: makes the capture noise reproducible (tests, snapshots).
    """

    name = "エミュレーション生体センサー"

    def __init__(
        self, person: str | None = None, *, noise: float = CAPTURE_NOISE, seed: int | None = None
    ) -> None:
        self._person = person
        self._noise = noise
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def present(self, person: str | None) -> None:
        with self._lock:
            self._person = person

    @property
    def person(self) -> str | None:
        return self._person

    def capture(self, claimed: str | None = None, timeout: float = 10.0) -> Sample:
        with self._lock:
            person = self._person if self._person is not None else claimed
            if person is None:
                raise SensorError("no hand on the sensor")
            features = synthetic_capture(synthetic_hand(person), self._rng, self._noise)
        assert len(features) == FEATURE_DIM
        return Sample(tuple(features))
