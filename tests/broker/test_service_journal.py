"""The Journal contract the service loop relies on, checked on both seams we ship: the in-memory
MemoryJournal and the SQLite test journal (nested atomic() = savepoint; rollback undoes inbox,
outbox and business effects together)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.journal import Journal, MemoryJournal

from .sqlite_journal import SqliteJournal


class Boom(Exception):
    pass


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryJournal()
    else:
        j = SqliteJournal(tmp_path / "j.db")
        yield j
        j.close()


def test_both_seams_satisfy_the_protocol(journal: Any) -> None:
    assert isinstance(journal, Journal)


def test_savepoint_rollback_keeps_the_outer_transaction(journal: Any) -> None:
    with journal.atomic():
        journal.inbox_add("A", "cli", "demo.notice", 1.0)
        with pytest.raises(Boom), journal.atomic():
            journal.inbox_add("B", "cli", "demo.notice", 2.0)
            journal.outbox_add("O1", "peer", "test.relay", {"n": 1}, 2.0)
            raise Boom
        journal.outbox_add("O2", "peer", "test.relay", {"n": 2}, 3.0, "corr")
    assert journal.inbox_contains("A")
    assert not journal.inbox_contains("B")
    [entry] = journal.outbox_pending(10)
    assert (entry.msg_id, entry.body, entry.correlation_id) == ("O2", {"n": 2}, "corr")


def test_outer_rollback_undoes_everything(journal: Any) -> None:
    with pytest.raises(Boom), journal.atomic():
        journal.inbox_add("A", "cli", "demo.notice", 1.0)
        journal.outbox_add("O1", "peer", "test.relay", {"n": 1}, 2.0)
        journal.record_refusal("X", "cli", "demo.notice", "schema", "extra field", 3.0)
        raise Boom
    assert not journal.inbox_contains("A")
    assert journal.outbox_depth() == 0


def test_outbox_is_oldest_first_and_mark_sent_removes_from_pending(journal: Any) -> None:
    with journal.atomic():
        seqs = [journal.outbox_add(f"M{i}", "peer", "t", {"i": i}, float(i)) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [e.msg_id for e in journal.outbox_pending(3)] == ["M0", "M1", "M2"]
    with journal.atomic():
        journal.outbox_mark_sent(seqs[:2], 10.0)
    assert [e.msg_id for e in journal.outbox_pending(10)] == ["M2", "M3", "M4"]
    assert journal.outbox_depth() == 3


def test_a_second_inbox_row_for_one_id_is_an_error(journal: Any) -> None:
    with journal.atomic():
        journal.inbox_add("A", "cli", "demo.notice", 1.0)
    with pytest.raises(Exception), journal.atomic():  # noqa: B017 - each seam raises its own
        journal.inbox_add("A", "cli", "demo.notice", 2.0)
    assert journal.inbox_contains("A")


def test_a_bundle_asks_and_records_its_items_at_once(journal: Any) -> None:
    with journal.atomic():
        journal.inbox_add_many([("A", "cli", "demo.notice", 1.0), ("B", "cli", "demo.notice", 1.0)])
    assert journal.inbox_seen(["A", "B", "C"]) == {"A", "B"}
    with pytest.raises(Exception), journal.atomic():  # noqa: B017 - each seam raises its own
        journal.inbox_add_many([("C", "cli", "demo.notice", 2.0), ("A", "cli", "demo.notice", 2.0)])
    assert journal.inbox_seen(["A", "B", "C"]) == {"A", "B"}
