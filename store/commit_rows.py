"""コミット時の追記 (rows written at commit): append-only rows a transaction batches up.

A node applies notices in group commits (broker/service.py): one transaction for a batch of a
hundred or so. Some rows of each notice are only ever appended and never read back inside that
transaction: the 提供・移転の記録 the CS writes for every update it passes to the prefecture (and
the prefecture for every update it passes to national), and the outbox row of each `ctx.send`.
Written one statement each, a provision row cost 37 µs (the driver call, the statement's own
setup, RETURNING); in one `executemany` of the batch's rows just before the commit, 10 µs.

`rows_at_commit(db)` opens such a batch for the enclosing transaction (the journal's top-level
`atomic()` does this); `append_at_commit(db, sql, params)` adds a row to it, or answers False when
there is none on this thread for that database, and the caller then writes the row at once. The
rows are the transaction's like any other: written before it commits (a failing write fails the
commit) and gone with a rollback. A savepoint rolled back drops those appended inside it:
peewee's own through the database classes of store.db, the journal's raw-SQL one by `undo_to`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import peewee

__all__ = ["CommitRows", "append_at_commit", "current_rows", "rows_at_commit"]

_local = threading.local()


def _real(db: peewee.Database | peewee.DatabaseProxy) -> Any:
    return db.obj if isinstance(db, peewee.DatabaseProxy) else db


class CommitRows:
    """The rows one transaction writes at its commit, in the order they were appended."""

    __slots__ = ("_rows", "db")

    def __init__(self, db: peewee.Database) -> None:
        self.db = db
        self._rows: list[tuple[str, Sequence[Any]]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, sql: str, params: Sequence[Any]) -> None:
        self._rows.append((sql, params))

    def mark(self) -> int:
        """Where the rows stand now (a savepoint's start)."""
        return len(self._rows)

    def undo_to(self, mark: int) -> None:
        """Forget the rows appended since `mark` (their savepoint was rolled back)."""
        del self._rows[mark:]

    def flush(self) -> None:
        """Write the rows (one `executemany` per run of the same statement), then forget them."""
        from store.db import translate_errors  # store.db builds on this module

        rows, self._rows = self._rows, []
        start = 0
        with translate_errors():
            cursor = self.db.cursor()
            while start < len(rows):
                sql = rows[start][0]
                end = start + 1
                while end < len(rows) and rows[end][0] == sql:
                    end += 1
                cursor.executemany(sql, [params for _sql, params in rows[start:end]])
                start = end


@contextmanager
def rows_at_commit(db: peewee.Database | peewee.DatabaseProxy) -> Iterator[CommitRows]:
    """Collect rows for the transaction open on `db` and write them when the block ends.

    Enter it inside the transaction and leave it before the commit; an exception leaving the
    block drops the rows (the transaction rolls back anyway).
    """
    rows = CommitRows(_real(db))
    outer = getattr(_local, "rows", None)
    _local.rows = rows
    try:
        yield rows
        rows.flush()
    finally:
        _local.rows = outer


def current_rows(db: peewee.Database | peewee.DatabaseProxy | None = None) -> CommitRows | None:
    """The batch open on this thread (for `db`, when given), if any."""
    rows: CommitRows | None = getattr(_local, "rows", None)
    if rows is None or (db is not None and rows.db is not _real(db)):
        return None
    return rows


def append_at_commit(
    db: peewee.Database | peewee.DatabaseProxy, sql: str, params: Sequence[Any]
) -> bool:
    """Append a row to this thread's batch for `db`; False when the caller must write it now."""
    rows = current_rows(db)
    if rows is None:
        return False
    rows.add(sql, params)
    return True
