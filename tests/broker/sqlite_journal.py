"""受信・送信台帳 (journal) on stdlib sqlite3, for broker tests that need a file that survives a
SIGKILL. store/journal.py is the real implementation; this one exists so the broker's tests do
not depend on store (which is built and tested on its own).

One connection per thread (sqlite3 connections are not shared across threads); `atomic()` is
BEGIN IMMEDIATE at depth 0 and a SAVEPOINT when nested, exactly the contract's semantics.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from broker.journal import OutboxEntry, Refusal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    msg_id TEXT PRIMARY KEY, sender TEXT NOT NULL, type TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL, correlation_id TEXT,
    sent_at REAL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sent_at, seq);
CREATE TABLE IF NOT EXISTS refusal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT, sender TEXT, type TEXT,
    reason TEXT NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS effect (
    id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL, value TEXT NOT NULL);
"""


class SqliteJournal:
    """A Journal on one SQLite file, plus an `effect` table standing in for business data."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        conn = self._conn()
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def atomic(self) -> AbstractContextManager[None]:
        return self._atomic()

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        conn = self._conn()
        depth: int = self._local.depth
        name = f"sp{depth}"
        conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        self._local.depth = depth + 1
        try:
            yield
        except BaseException:
            if depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        else:
            conn.execute("COMMIT" if depth == 0 else f"RELEASE {name}")
        finally:
            self._local.depth = depth

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    def inbox_contains(self, msg_id: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM inbox WHERE msg_id = ?", (msg_id,)).fetchone()
        return row is not None

    def inbox_add(self, msg_id: str, sender: str, type: str, received_at: float) -> None:
        self._conn().execute(
            "INSERT INTO inbox (msg_id, sender, type, received_at) VALUES (?, ?, ?, ?)",
            (msg_id, sender, type, received_at),
        )

    def outbox_add(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> int:
        cur = self._conn().execute(
            "INSERT INTO outbox (msg_id, recipient, type, body, created_at, correlation_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (msg_id, recipient, type, json.dumps(body), created_at, correlation_id),
        )
        return int(cur.lastrowid or 0)

    def outbox_pending(self, limit: int) -> list[OutboxEntry]:
        rows = self._conn().execute(
            "SELECT seq, msg_id, recipient, type, body, created_at, correlation_id FROM outbox"
            " WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            OutboxEntry(seq, mid, rcpt, typ, json.loads(body), created, cid)
            for seq, mid, rcpt, typ, body, created, cid in rows
        ]

    def outbox_mark_sent(self, seqs: list[int], sent_at: float) -> None:
        self._conn().executemany(
            "UPDATE outbox SET sent_at = ? WHERE seq = ?", [(sent_at, s) for s in seqs]
        )

    def outbox_depth(self) -> int:
        (n,) = self._conn().execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        return int(n)

    def record_refusal(
        self,
        msg_id: str | None,
        sender: str | None,
        type: str | None,
        reason: str,
        detail: str,
        at: float,
    ) -> None:
        self._conn().execute(
            "INSERT INTO refusal (msg_id, sender, type, reason, detail, at) VALUES (?,?,?,?,?,?)",
            (msg_id, sender, type, reason, detail, at),
        )

    def refusals(self) -> list[Refusal]:
        rows = self._conn().execute(
            "SELECT msg_id, sender, type, reason, detail, at FROM refusal ORDER BY id"
        )
        return [Refusal(*row) for row in rows]
