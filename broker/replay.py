"""再送検知 (replay detection): message ids already accepted, remembered until they expire.

An id needs remembering only until its deadline + skew has passed: after that the Opener's expiry
check refuses a replay anyway. `MemoryReplayGuard` forgets ids exactly then, so its size tracks
(message rate × lifetime). It is also hard-bounded by `capacity`: when full, the id closest to
expiry is dropped first and counted in `evicted_early` (a health figure; a non-zero value means
capacity is too small for the traffic). Durable notices are additionally checked against the
node's inbox table via `CombinedReplayGuard`, so neither eviction nor a restart lets a replayed
notice be applied twice.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from broker.envelope import ReplayGuard


class MemoryReplayGuard:
    """Ids remembered in memory until their deadline + skew. Thread-safe."""

    def __init__(
        self,
        *,
        skew_seconds: float,
        capacity: int = 500_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._skew_ms = int(skew_seconds * 1000)
        self._capacity = capacity
        self._clock = clock
        self._forget_at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self.evicted_early = 0

    def remember(self, msg_id: str, deadline_ms: int) -> None:
        """Record `msg_id` as accepted; it is forgotten once `deadline_ms` + skew has passed."""
        forget_at = deadline_ms + self._skew_ms
        with self._lock:
            self._purge(int(self._clock() * 1000))
            previous = self._forget_at.get(msg_id)
            if previous is not None and previous >= forget_at:
                return
            self._forget_at[msg_id] = forget_at
            heapq.heappush(self._heap, (forget_at, msg_id))
            while len(self._forget_at) > self._capacity:
                self._pop_earliest()
                self.evicted_early += 1

    def seen(self, msg_id: str) -> bool:
        with self._lock:
            forget_at = self._forget_at.get(msg_id)
            if forget_at is None:
                return False
            if forget_at < int(self._clock() * 1000):
                self._purge(int(self._clock() * 1000))
                return False
            return True

    def __len__(self) -> int:
        return len(self._forget_at)

    def _pop_earliest(self) -> None:
        # Heap entries may be stale (an id re-remembered with a later deadline); skip those.
        while self._heap:
            forget_at, msg_id = heapq.heappop(self._heap)
            if self._forget_at.get(msg_id) == forget_at:
                del self._forget_at[msg_id]
                return

    def _purge(self, now_ms: int) -> None:
        heap = self._heap
        while heap and heap[0][0] < now_ms:
            forget_at, msg_id = heapq.heappop(heap)
            if self._forget_at.get(msg_id) == forget_at:
                del self._forget_at[msg_id]


class CombinedReplayGuard:
    """Seen if any of the guards has seen it (e.g. memory first, then the inbox table)."""

    def __init__(self, *guards: ReplayGuard) -> None:
        self._guards = guards

    def seen(self, msg_id: str) -> bool:
        return any(guard.seen(msg_id) for guard in self._guards)
