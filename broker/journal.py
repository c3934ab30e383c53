"""受信・送信台帳 (inbox/outbox journal): the seam that makes notices exactly-once.

The service loop never imports store; the node runtime hands it an object with these methods
(structural typing). `atomic()` is one database transaction, nested calls are savepoints, and the
handler's own store writes happen inside it on the same thread, so the inbox row, the business
change and the onward outbox rows commit together or not at all. `MemoryJournal` is the in-memory
seam for unit tests; store/journal.py is the database implementation.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One onward notice waiting to be sealed and relayed (sealed at relay time, not here)."""

    seq: int
    msg_id: str
    recipient: str
    type: str
    body: dict[str, Any]
    created_at: float
    correlation_id: str | None = None
    packed: bytes | None = None
    """The body's msgpack bytes as stored, when the journal has them: the relay splices them
    into its bundle instead of decoding and encoding every row again."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A recorded refusal (what `record_refusal` stores); MemoryJournal keeps these in a list."""

    msg_id: str | None
    sender: str | None
    type: str | None
    reason: str
    detail: str
    at: float


@runtime_checkable
class Journal(Protocol):
    """docs/architecture.md, "Journal": exactly-once across the store."""

    def atomic(self) -> AbstractContextManager[Any]: ...

    def savepoint(self) -> AbstractContextManager[Any]:
        """A savepoint inside the transaction `atomic()` opened (one per handled notice)."""
        ...

    def inbox_contains(self, msg_id: str) -> bool: ...

    def inbox_add(self, msg_id: str, sender: str, type: str, received_at: float) -> None: ...

    def inbox_seen(self, msg_ids: list[str]) -> set[str]:
        """Which of `msg_ids` are in the inbox (one question for a whole bundle)."""
        ...

    def inbox_add_many(self, rows: list[tuple[str, str, str, float]]) -> None:
        """inbox_add for each (msg_id, sender, type, received_at), in one statement."""
        ...

    def outbox_add(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> int: ...

    def outbox_add_at_commit(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> None:
        """`outbox_add` from inside a group commit: the row may be written with the other such
        rows just before the transaction commits (its seq is not known before). Relay order is
        still the order of these calls."""
        ...

    def outbox_pending(self, limit: int) -> list[OutboxEntry]: ...

    def outbox_mark_sent(self, seqs: list[int], sent_at: float) -> None:
        """The relay's bookkeeping, written on its own or kept for a later transaction (it need
        not wait for the disk: a lost mark only makes the relay send the rows again, and the
        recipient's inbox drops them). Marked rows are no longer pending either way."""
        ...

    def outbox_write_marks(self) -> None:
        """Write whatever marks are still kept, if that needs no waiting (the relay is idle)."""
        ...

    def outbox_depth(self) -> int: ...

    def record_refusal(
        self,
        msg_id: str | None,
        sender: str | None,
        type: str | None,
        reason: str,
        detail: str,
        at: float,
    ) -> None: ...


@dataclass
class _State:
    inbox: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    outbox: dict[int, tuple[OutboxEntry, float | None]] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    next_seq: int = 1
    effects: list[Any] = field(default_factory=list)


class MemoryJournal:
    """In-memory Journal with real transaction semantics (nested atomic = savepoint).

    Rolling back restores a deep copy of the state taken when the (sub)transaction began, which
    is slow for big journals and exactly right for unit tests. `effects` is a list handlers may
    append to, so a test can observe "the business change" rolling back with the inbox row.
    One lock serialises transactions across threads, as a database connection would.
    """

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.RLock()
        self._depth = 0

    @property
    def effects(self) -> list[Any]:
        return self._state.effects

    @property
    def refusals(self) -> list[Refusal]:
        return list(self._state.refusals)

    def atomic(self) -> AbstractContextManager[None]:
        return self._atomic()

    def savepoint(self) -> AbstractContextManager[None]:
        return self._atomic()

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        with self._lock:
            saved = copy.deepcopy(self._state)
            self._depth += 1
            try:
                yield
            except BaseException:
                self._state = saved
                raise
            finally:
                self._depth -= 1

    def inbox_contains(self, msg_id: str) -> bool:
        with self._lock:
            return msg_id in self._state.inbox

    def inbox_add(self, msg_id: str, sender: str, type: str, received_at: float) -> None:
        with self._lock:
            if msg_id in self._state.inbox:
                raise KeyError(f"inbox already holds {msg_id}")
            self._state.inbox[msg_id] = (sender, type, received_at)

    def inbox_seen(self, msg_ids: list[str]) -> set[str]:
        with self._lock:
            return {m for m in msg_ids if m in self._state.inbox}

    def inbox_add_many(self, rows: list[tuple[str, str, str, float]]) -> None:
        with self._lock:
            for msg_id, sender, type, received_at in rows:
                self.inbox_add(msg_id, sender, type, received_at)

    def inbox_ids(self) -> list[str]:
        with self._lock:
            return list(self._state.inbox)

    def outbox_add(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> int:
        with self._lock:
            seq = self._state.next_seq
            self._state.next_seq += 1
            entry = OutboxEntry(
                seq, msg_id, recipient, type, copy.deepcopy(body), created_at, correlation_id
            )
            self._state.outbox[seq] = (entry, None)
            return seq

    def outbox_add_at_commit(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> None:
        self.outbox_add(msg_id, recipient, type, body, created_at, correlation_id)

    def outbox_pending(self, limit: int) -> list[OutboxEntry]:
        with self._lock:
            pending = [e for e, sent in self._state.outbox.values() if sent is None]
            pending.sort(key=lambda e: e.seq)
            return pending[:limit]

    def outbox_mark_sent(self, seqs: list[int], sent_at: float) -> None:
        with self._lock:
            for seq in seqs:
                entry, _ = self._state.outbox[seq]
                self._state.outbox[seq] = (entry, sent_at)

    def outbox_write_marks(self) -> None:
        return None  # marks are written at once

    def outbox_depth(self) -> int:
        with self._lock:
            return sum(1 for _, sent in self._state.outbox.values() if sent is None)

    def record_refusal(
        self,
        msg_id: str | None,
        sender: str | None,
        type: str | None,
        reason: str,
        detail: str,
        at: float,
    ) -> None:
        with self._lock:
            self._state.refusals.append(Refusal(msg_id, sender, type, reason, detail, at))
