"""コミット時の追記: provision rows batched to a group commit are written with it, or not at all.

Every test runs on SQLite and on the real PostgreSQL (the `db` fixture). The journal's top-level
`atomic()` is the group commit a node's service loop runs; `savepoint()` is the per-notice
savepoint of its careful pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import peewee
import pytest

from store.auditlog import (
    AuditLogError,
    ProvisionLogRow,
    provision_entries,
    record_provision_at_commit,
)
from store.commit_rows import append_at_commit, current_rows
from store.db import IntegrityViolation
from store.journal import PeeweeJournal

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


class Boom(Exception):
    pass


def _provide(i: int, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "at": T0 + timedelta(seconds=i),
        "operator_id": "registry.041009",
        "terminal_id": "registry.041009",
        "recipient": "pref.04",
        "message_type": "pref.cs.identity_update",
        "legal_basis": "住基法30条の6",
        "target": f"1234567{i:04d}",
        "result": "provided",
        "msg_id": f"MSG{i:04d}",
    }
    fields.update(overrides)
    record_provision_at_commit(**fields)


def _logged() -> list[str]:
    return [e.msg_id for e in provision_entries()]


def _rows_in_table(db: peewee.Database) -> int:
    return int(db.execute_sql('SELECT COUNT(*) FROM "provision_log"').fetchone()[0])


def test_rows_of_a_group_commit_are_written_with_it_in_order(db: peewee.Database) -> None:
    journal = PeeweeJournal(db)
    with journal.atomic():
        for i in range(1, 6):
            _provide(i)
        journal.inbox_add("N1", "registry.041009", "cs.registry.identity_update", 1.0)
        _provide(6, recipient="cardmgmt")
        assert len(current_rows() or ()) == 6  # kept for the commit, not yet written
        assert _rows_in_table(db) == 0
    assert _logged() == [f"MSG{i:04d}" for i in range(1, 7)]
    entry = provision_entries(recipient="cardmgmt")[0]
    assert (entry.at, entry.target, entry.legal_basis) == (
        T0 + timedelta(seconds=6),
        "12345670006",
        "住基法30条の6",
    )
    assert current_rows() is None


def test_a_rolled_back_group_commit_writes_none_of_them(db: peewee.Database) -> None:
    journal = PeeweeJournal(db)
    with pytest.raises(Boom), journal.atomic():
        _provide(1)
        _provide(2)
        raise Boom
    assert _logged() == []
    with journal.atomic():  # the next transaction starts with nothing left over
        _provide(3)
    assert _logged() == ["MSG0003"]


def test_a_rolled_back_savepoint_drops_only_its_own_rows(db: peewee.Database) -> None:
    journal = PeeweeJournal(db)
    with journal.atomic():
        _provide(1)
        with pytest.raises(Boom), journal.savepoint():
            _provide(2)
            _provide(3)
            raise Boom
        with journal.savepoint():
            _provide(4)
    assert _logged() == ["MSG0001", "MSG0004"]


def test_peewee_savepoints_keep_the_rows_in_step(db: peewee.Database) -> None:
    journal = PeeweeJournal(db)
    with journal.atomic():
        _provide(1)
        with pytest.raises(Boom), db.atomic():  # nested atomic: a peewee savepoint
            _provide(2)
            with db.atomic():
                _provide(3)
            raise Boom
        with db.atomic():
            _provide(4)
    assert _logged() == ["MSG0001", "MSG0004"]
    with journal.atomic() as tx:
        _provide(5)
        tx.rollback()  # an explicit rollback of the whole transaction so far
        _provide(6)
        tx.commit()  # an explicit commit mid-block writes what was kept for it
        _provide(7)
        tx.rollback()
    assert _logged() == ["MSG0001", "MSG0004", "MSG0006"]


def test_without_a_group_commit_the_row_is_written_at_once(db: peewee.Database) -> None:
    _provide(1)
    assert _rows_in_table(db) == 1
    with db.atomic():  # a plain transaction opens no batch either
        _provide(2)
        assert _rows_in_table(db) == 2
    assert _logged() == ["MSG0001", "MSG0002"]


def test_bad_rows_are_refused_when_recorded_not_at_commit(db: peewee.Database) -> None:
    journal = PeeweeJournal(db)
    with journal.atomic():
        _provide(1)
        with pytest.raises(AuditLogError):
            _provide(2, target="123456789012")  # a 個人番号 never enters the log
        with pytest.raises(AuditLogError):
            _provide(3, result="refused")  # without its reason code
    assert _logged() == ["MSG0001"]


def test_a_row_failing_at_commit_fails_the_whole_transaction(db: peewee.Database) -> None:
    journal = PeeweeJournal(db)
    table = ProvisionLogRow._meta.table_name
    p = db.param
    with pytest.raises(IntegrityViolation), journal.atomic():
        journal.inbox_add("N1", "registry.041009", "cs.registry.identity_update", 1.0)
        _provide(1)
        # NOT NULL refuses this one only when the batch is written, just before the commit
        assert append_at_commit(db, f'INSERT INTO "{table}" ("at") VALUES ({p})', (0,))
    assert _logged() == []
    assert not journal.inbox_contains("N1")
