"""The inbox / outbox / refusal journal: exactly-once bookkeeping on SQLite and PostgreSQL."""

from __future__ import annotations

import inspect
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import peewee
import pytest

from broker.ids import ALPHABET, first_id_at
from broker.journal import Journal as BrokerJournal
from store.db import DuplicateKey, open_database
from store.journal import JOURNAL_MODELS, OutboxEntry, PeeweeJournal


class JournalContract(Protocol):
    """The Journal protocol as docs/architecture.md states it (the broker's side of the seam)."""

    def atomic(self) -> AbstractContextManager[Any]: ...
    def savepoint(self) -> AbstractContextManager[Any]: ...
    def inbox_contains(self, msg_id: str) -> bool: ...
    def inbox_add(self, msg_id: str, sender: str, type: str, received_at: float) -> None: ...
    def inbox_seen(self, msg_ids: list[str]) -> set[str]: ...
    def inbox_add_many(self, rows: list[tuple[str, str, str, float]]) -> None: ...
    def outbox_add(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict,
        created_at: float,
        correlation_id: str | None = None,
    ) -> int: ...
    def outbox_add_at_commit(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict,
        created_at: float,
        correlation_id: str | None = None,
    ) -> None: ...
    def outbox_pending(self, limit: int) -> list[OutboxEntry]: ...
    def outbox_mark_sent(self, seqs: list[int], sent_at: float) -> None: ...
    def outbox_write_marks(self) -> None: ...
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


class Boom(Exception):
    pass


@pytest.fixture
def journal(empty_db: peewee.Database) -> Iterator[PeeweeJournal]:
    empty_db.create_tables(JOURNAL_MODELS)
    yield PeeweeJournal(empty_db)


@pytest.mark.parametrize("contract", [JournalContract, BrokerJournal], ids=["docs", "broker"])
def test_signatures_match_the_contract(contract: type) -> None:
    for name, member in inspect.getmembers(contract, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = inspect.signature(getattr(PeeweeJournal, name))
        theirs = inspect.signature(member)
        assert list(ours.parameters) == list(theirs.parameters), name
        for param in theirs.parameters.values():
            assert ours.parameters[param.name].default == param.default, (name, param.name)


def test_is_a_broker_journal(journal: PeeweeJournal) -> None:
    assert isinstance(journal, BrokerJournal)


def test_inbox_remembers_applied_ids(journal: PeeweeJournal) -> None:
    assert not journal.inbox_contains("01HZX")
    journal.inbox_add("01HZX", "registry.041009", "identity.update", 1000.5)
    assert journal.inbox_contains("01HZX")
    assert not journal.inbox_contains("01HZY")


def test_inbox_add_twice_raises_duplicate(journal: PeeweeJournal) -> None:
    journal.inbox_add("01HZX", "registry.041009", "identity.update", 1.0)
    with pytest.raises(DuplicateKey):
        journal.inbox_add("01HZX", "registry.041009", "identity.update", 2.0)


def test_outbox_round_trips_bodies_and_keeps_fifo_order(journal: PeeweeJournal) -> None:
    bodies = [
        {"resident_code": "12345678901", "names": ["山田", "やまだ"], "n": 3},
        {"image": b"\x00\x01\xff", "nested": {"ok": True, "f": 1.5, "none": None}},
        {"empty": {}},
    ]
    seqs = [
        journal.outbox_add(f"m{i}", "pref.04", "identity.notice", body, 10.0 + i, f"c{i}")
        for i, body in enumerate(bodies)
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    pending = journal.outbox_pending(10)
    assert [e.seq for e in pending] == seqs
    assert [e.body for e in pending] == bodies
    assert isinstance(pending[1].body["image"], bytes)
    first = pending[0]
    assert (first.msg_id, first.recipient, first.type) == ("m0", "pref.04", "identity.notice")
    assert (first.created_at, first.correlation_id) == (10.0, "c0")
    assert [e.seq for e in journal.outbox_pending(2)] == seqs[:2]


def test_outbox_correlation_id_defaults_to_none(journal: PeeweeJournal) -> None:
    journal.outbox_add("m1", "cardmgmt", "card.event", {}, 1.0)
    assert journal.outbox_pending(1)[0].correlation_id is None


def test_mark_sent_removes_from_pending_and_depth(journal: PeeweeJournal) -> None:
    seqs = [journal.outbox_add(f"m{i}", "pref.04", "t", {"i": i}, float(i)) for i in range(5)]
    assert journal.outbox_depth() == 5
    journal.outbox_mark_sent([seqs[0], seqs[2]], 99.0)
    assert journal.outbox_depth() == 3
    assert [e.seq for e in journal.outbox_pending(10)] == [seqs[1], seqs[3], seqs[4]]
    journal.outbox_mark_sent([], 100.0)
    assert journal.outbox_depth() == 3


def test_mark_sent_handles_more_ids_than_one_statement_takes(journal: PeeweeJournal) -> None:
    with journal.atomic():
        seqs = [journal.outbox_add(f"m{i}", "p", "t", {}, 0.0) for i in range(1203)]
    journal.outbox_mark_sent(seqs[:-1], 5.0)
    assert [e.seq for e in journal.outbox_pending(10)] == [seqs[-1]]


def test_marks_commit_on_their_own_and_leave_commit_durability_as_it_was(
    journal: PeeweeJournal, empty_db: peewee.Database
) -> None:
    seqs = [journal.outbox_add(f"m{i}", "p", "t", {}, 0.0) for i in range(3)]
    journal.outbox_mark_sent(seqs[:2], 5.0)
    journal.outbox_write_marks()  # SQLite keeps them until the relay is idle
    assert not empty_db.in_transaction()
    empty_db.close()  # a new connection sees only what was committed
    assert [e.seq for e in journal.outbox_pending(10)] == [seqs[2]]
    if isinstance(empty_db, peewee.SqliteDatabase):
        # the relaxed sync applied to the mark only: the next business commit fsyncs again
        journal.outbox_mark_sent(seqs[2:], 6.0)
        journal.outbox_write_marks()
        assert empty_db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        journal.outbox_mark_sent(seqs[2:], 6.0)
        assert empty_db.execute_sql("SHOW synchronous_commit").fetchone()[0] == "on"
    assert journal.outbox_depth() == 0


def test_outbox_oldest_is_the_first_row_still_waiting(journal: PeeweeJournal) -> None:
    assert journal.outbox_oldest() is None
    first = journal.outbox_add("a", "p", "t", {}, 100.0)
    journal.outbox_add("b", "p", "t", {}, 250.0)
    assert journal.outbox_oldest() == 100.0
    journal.outbox_mark_sent([first], 300.0)  # relayed, its mark not yet written: not waiting
    assert journal.outbox_oldest() == 250.0
    journal.outbox_write_marks()
    assert journal.outbox_oldest() == 250.0


def test_purge_sent_keeps_unsent(journal: PeeweeJournal) -> None:
    a = journal.outbox_add("a", "p", "t", {}, 0.0)
    journal.outbox_add("b", "p", "t", {}, 0.0)
    journal.outbox_mark_sent([a], 10.0)
    journal.outbox_write_marks()
    assert journal.outbox_purge_sent(before=5.0) == 0
    assert journal.outbox_purge_sent(before=11.0) == 1
    assert [e.msg_id for e in journal.outbox_pending(5)] == ["b"]


def test_purge_sent_goes_on_past_its_chunk(
    journal: PeeweeJournal, empty_db: peewee.Database
) -> None:
    # 7 old relayed rows, purged 3 per transaction: all go; the recent and the unsent stay
    old = [journal.outbox_add(f"old{i}", "p", "t", {}, 0.0) for i in range(7)]
    recent = journal.outbox_add("recent", "p", "t", {}, 0.0)
    journal.outbox_add("unsent", "p", "t", {}, 0.0)
    journal.outbox_mark_sent(old, 10.0)
    journal.outbox_mark_sent([recent], 20.0)
    journal.outbox_write_marks()
    assert journal.outbox_purge_sent(before=15.0, chunk=3) == 7
    left = [r[0] for r in empty_db.execute_sql("SELECT msg_id FROM outbox ORDER BY seq")]
    assert left == ["recent", "unsent"]
    assert journal.outbox_purge_sent(before=15.0, chunk=3) == 0


def test_inbox_purge_forgets_ids_made_before_the_cut_and_goes_on_past_its_chunk(
    journal: PeeweeJournal, empty_db: peewee.Database
) -> None:
    # ids as the service stores them (ULIDs) on both sides of the cut, compared by the
    # database itself: on PostgreSQL under the database's own collation
    def made_at(ms: int) -> str:  # new_message_id never goes back in time within a process
        return first_id_at(ms)[:10] + "".join(random.choices(ALPHABET, k=16))

    cut = 1_780_000_000_000
    old = [made_at(cut - 86_400_000 + i) for i in range(6)] + [made_at(cut - 1)]
    kept = [made_at(cut), made_at(cut + 1), made_at(cut + 86_400_000)]
    journal.inbox_add_many([(m, "registry.041009", "t", 1.0) for m in old + kept])
    assert journal.inbox_purge(first_id_at(cut), chunk=3) == 7
    left = [r[0] for r in empty_db.execute_sql("SELECT msg_id FROM inbox ORDER BY msg_id")]
    assert left == sorted(kept)
    assert journal.inbox_purge(first_id_at(cut), chunk=3) == 0


def test_outbox_rows_at_commit_keep_the_order_of_the_calls(
    journal: PeeweeJournal, empty_db: peewee.Database
) -> None:
    with journal.atomic():
        for i in range(3):
            journal.outbox_add_at_commit(f"m{i}", "pref.04", "t", {"i": i, "b": b"\x00"}, 1.0 + i)
        journal.outbox_add_at_commit("m3", "cardmgmt", "card.event", {}, 9.0, "corr")
        assert empty_db.execute_sql('SELECT COUNT(*) FROM "outbox"').fetchone()[0] == 0
    pending = journal.outbox_pending(10)
    assert [e.msg_id for e in pending] == ["m0", "m1", "m2", "m3"]
    assert [e.seq for e in pending] == sorted(e.seq for e in pending)
    assert pending[1].body == {"i": 1, "b": b"\x00"} and pending[1].created_at == 2.0
    assert (pending[3].recipient, pending[3].correlation_id) == ("cardmgmt", "corr")


def test_outbox_rows_at_commit_go_with_a_rollback(journal: PeeweeJournal) -> None:
    with pytest.raises(Boom), journal.atomic():
        journal.outbox_add_at_commit("m1", "pref.04", "t", {}, 1.0)
        raise Boom
    assert journal.outbox_depth() == 0
    journal.outbox_add_at_commit("m2", "pref.04", "t", {}, 2.0)  # no transaction: written now
    assert [e.msg_id for e in journal.outbox_pending(5)] == ["m2"]


def test_failing_handler_leaves_no_inbox_or_outbox_row(journal: PeeweeJournal) -> None:
    with pytest.raises(Boom), journal.atomic():
        journal.inbox_add("m1", "registry.041009", "identity.update", 1.0)
        journal.outbox_add("o1", "pref.04", "identity.notice", {"x": 1}, 1.0)
        raise Boom
    assert not journal.inbox_contains("m1")
    assert journal.outbox_depth() == 0


def test_commit_is_visible_to_another_connection_only_after_commit(
    journal: PeeweeJournal, store_url: str
) -> None:
    other = open_database(store_url, bind=False)
    other_journal = PeeweeJournal(other)
    try:
        with journal.atomic():
            journal.inbox_add("m1", "s", "t", 1.0)
            journal.outbox_add("o1", "pref.04", "t", {}, 1.0)
            assert not other_journal.inbox_contains("m1")
            assert other_journal.outbox_depth() == 0
        assert other_journal.inbox_contains("m1")
        assert other_journal.outbox_depth() == 1
    finally:
        other.close()


def test_nested_atomic_is_a_savepoint(journal: PeeweeJournal) -> None:
    with journal.atomic():
        journal.inbox_add("outer", "s", "t", 1.0)
        with pytest.raises(Boom), journal.atomic():
            journal.outbox_add("inner", "p", "t", {}, 1.0)
            raise Boom
        journal.outbox_add("after", "p", "t", {}, 2.0)
    assert journal.inbox_contains("outer")
    assert [e.msg_id for e in journal.outbox_pending(5)] == ["after"]


def test_duplicate_inside_a_savepoint_leaves_the_outer_transaction_usable(
    journal: PeeweeJournal,
) -> None:
    journal.inbox_add("seen", "s", "t", 1.0)
    with journal.atomic():
        with pytest.raises(DuplicateKey), journal.atomic():
            journal.inbox_add("seen", "s", "t", 2.0)
        # On PostgreSQL this only works because the savepoint was rolled back.
        journal.inbox_add("fresh", "s", "t", 3.0)
    assert journal.inbox_contains("fresh")


def test_refusals_are_recorded_latest_first(journal: PeeweeJournal) -> None:
    journal.record_refusal("m1", "term.041009.001", "search.4info", "route_not_allowed", "x", 5.0)
    journal.record_refusal(None, None, None, "malformed", "not msgpack", 6.0)
    rows = journal.refusals()
    assert [r["reason"] for r in rows] == ["malformed", "route_not_allowed"]
    assert rows[1]["sender"] == "term.041009.001" and rows[0]["msg_id"] is None
    assert [r["reason"] for r in journal.refusals(since=5.5)] == ["malformed"]


def test_a_savepoint_rolls_back_only_its_own_writes_and_nests(journal: PeeweeJournal) -> None:
    with journal.atomic():
        journal.inbox_add("01KB0000000000000000000001", "cs", "t", 1.0)
        with pytest.raises(Boom), journal.savepoint():
            journal.inbox_add("01KB0000000000000000000002", "cs", "t", 1.0)
            raise Boom
        with journal.savepoint():
            journal.inbox_add("01KB0000000000000000000003", "cs", "t", 1.0)
            with pytest.raises(Boom), journal.savepoint():  # inner, same name: innermost wins
                journal.inbox_add("01KB0000000000000000000004", "cs", "t", 1.0)
                raise Boom
            with journal.database.atomic():  # peewee's own savepoint nests inside ours
                journal.inbox_add("01KB0000000000000000000005", "cs", "t", 1.0)
    held = [journal.inbox_contains(f"01KB000000000000000000000{i}") for i in range(1, 6)]
    assert held == [True, False, True, False, True]


def test_a_failed_statement_inside_a_savepoint_leaves_the_transaction_usable(
    journal: PeeweeJournal,
) -> None:
    with journal.atomic():
        journal.inbox_add("01KB0000000000000000000001", "cs", "t", 1.0)
        with pytest.raises(DuplicateKey), journal.savepoint():
            journal.inbox_add("01KB0000000000000000000001", "cs", "t", 1.0)  # PostgreSQL aborts
        journal.inbox_add("01KB0000000000000000000002", "cs", "t", 1.0)
    assert journal.inbox_contains("01KB0000000000000000000002")


# --- the relay's sent marks never queue behind the service's write lock (SQLite) -----------------


@pytest.fixture
def sqlite_journal(tmp_path: Path) -> Iterator[tuple[PeeweeJournal, Path]]:
    """SQLite only: PostgreSQL writers do not share one write lock."""
    path = tmp_path / "node.db"
    db = open_database(f"sqlite:///{path}")
    db.create_tables(JOURNAL_MODELS)
    try:
        yield PeeweeJournal(db), path
    finally:
        db.close()


def _writer(path: Path) -> sqlite3.Connection:
    """Another writer (the service thread, say), usable from any thread."""
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def _sent_at(path: Path) -> dict[int, float | None]:
    """What is committed, through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute('SELECT "seq", "sent_at" FROM "outbox"').fetchall())
    finally:
        conn.close()


def test_marks_wait_for_the_next_transaction_when_the_write_lock_is_taken(
    sqlite_journal: tuple[PeeweeJournal, Path],
) -> None:
    journal, path = sqlite_journal
    db = journal.database
    seqs = [journal.outbox_add(f"m{i}", "pref.04", "t", {"i": i}, float(i)) for i in range(5)]
    timeout = db.execute_sql("PRAGMA busy_timeout").fetchone()[0]
    service = _writer(path)
    try:
        service.execute("BEGIN IMMEDIATE")
        journal.outbox_mark_sent([seqs[0], seqs[2]], 99.0)  # returns without the lock
        service.execute("COMMIT")
    finally:
        service.close()
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == timeout
    # not written yet, but no longer pending: neither relayed again nor counted as waiting
    assert all(at is None for at in _sent_at(path).values())
    assert [e.seq for e in journal.outbox_pending(10)] == [seqs[1], seqs[3], seqs[4]]
    assert [e.seq for e in journal.outbox_pending(2)] == [seqs[1], seqs[3]]
    assert journal.outbox_depth() == 3
    # a transaction that rolls back does not count as having written them
    with pytest.raises(Boom), journal.atomic():
        raise Boom
    assert all(at is None for at in _sent_at(path).values())
    assert journal.outbox_depth() == 3
    # the next transaction that commits writes them
    with journal.atomic():
        journal.inbox_add("x", "s", "t", 1.0)
    committed = _sent_at(path)
    assert {s for s, at in committed.items() if at is not None} == {seqs[0], seqs[2]}
    assert committed[seqs[0]] == 99.0
    assert journal.outbox_depth() == 3
    assert [e.seq for e in journal.outbox_pending(10)] == [seqs[1], seqs[3], seqs[4]]


def test_marks_wait_for_an_idle_relay_and_a_free_lock_and_are_waited_for_past_the_cap(
    sqlite_journal: tuple[PeeweeJournal, Path],
) -> None:
    journal, path = sqlite_journal
    seqs = [journal.outbox_add(f"m{i}", "pref.04", "t", {}, 0.0) for i in range(4)]
    journal.outbox_mark_sent([seqs[0]], 5.0)
    # kept even though the lock is free: a write on the relay's own connection would make
    # SQLite drop the service connection's page cache
    assert _sent_at(path)[seqs[0]] is None
    assert journal.outbox_depth() == 3
    service = _writer(path)
    try:
        service.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        journal.outbox_write_marks()  # the lock is taken: returns at once, still kept
        assert time.monotonic() - started < 1.0
        service.execute("COMMIT")
    finally:
        service.close()
    assert _sent_at(path)[seqs[0]] is None
    journal.outbox_write_marks()  # idle relay, free lock: written, no transaction needed
    assert _sent_at(path)[seqs[0]] == 5.0
    assert journal.outbox_depth() == 3

    journal.MAX_DEFERRED_MARKS = 1
    service = _writer(path)
    released = threading.Event()

    def hold_then_release() -> None:
        time.sleep(0.3)
        released.set()
        service.execute("COMMIT")

    try:
        service.execute("BEGIN IMMEDIATE")
        holder = threading.Thread(target=hold_then_release)
        holder.start()
        journal.outbox_mark_sent([seqs[1], seqs[2]], 6.0)  # two kept > the cap of one: waits
        assert released.is_set()
        holder.join()
    finally:
        service.close()
    committed = _sent_at(path)
    assert (committed[seqs[1]], committed[seqs[2]], committed[seqs[3]]) == (6.0, 6.0, None)
    assert journal.outbox_depth() == 1


def test_inbox_questions_and_inserts_for_a_whole_bundle(journal: PeeweeJournal) -> None:
    ids = [f"m{i:04d}" for i in range(1203)]  # more than one statement takes
    journal.inbox_add_many([(m, "cs.041009", "pref.cs.identity_update", 1.0) for m in ids[::2]])
    assert journal.inbox_seen(ids) == set(ids[::2])
    assert journal.inbox_seen([]) == set()
    assert journal.inbox_contains("m0000") and not journal.inbox_contains("m0001")
    # a copy among the rows refuses them all; the caller's transaction then holds none of them
    with pytest.raises(DuplicateKey), journal.atomic():
        journal.inbox_add_many([("m0001", "s", "t", 2.0), ("m0002", "s", "t", 2.0)])
    assert journal.inbox_seen(["m0001", "m0003"]) == set()
