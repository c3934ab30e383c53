"""受信・送信台帳 (journal) on a SQLite file, for broker tests that need one surviving a SIGKILL:
the store's own PeeweeJournal, plus an `effect` table standing in for business data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from store.db import open_database
from store.journal import JOURNAL_MODELS, PeeweeJournal


class SqliteJournal(PeeweeJournal):
    """store.journal.PeeweeJournal on one SQLite file, with an `effect` table and raw queries."""

    def __init__(self, path: str | Path) -> None:
        db = open_database(f"sqlite:///{path}", bind=False)
        with db.bind_ctx(JOURNAL_MODELS):
            db.create_tables(JOURNAL_MODELS, safe=True)
        db.execute_sql(
            "CREATE TABLE IF NOT EXISTS effect (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "msg_id TEXT NOT NULL, value TEXT NOT NULL)"
        )
        super().__init__(db)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.database.execute_sql(sql, params).fetchall())

    def close(self) -> None:
        self.database.close()
