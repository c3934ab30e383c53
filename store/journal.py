"""受信・送信記録 (message journal): inbox, outbox and refusal tables behind exactly-once delivery.

`PeeweeJournal` is the store side of the ``Journal`` protocol in docs/architecture.md. The broker's
service loop receives it from the node runtime and never imports store (structural typing), so
the method names and signatures here are the contract, not a convenience.

Why three tables:
    inbox    one row per applied durable message id. It commits in the same transaction as the
             handler's business change, so a message redelivered after a crash (acked or not) is
             recognised and skipped: applied once, never twice.
    outbox   onward notices written by a handler inside that same transaction and relayed later
             with publisher confirms; a node killed between commit and publish loses nothing.
    refusal  every message the node refused (bad signature, replay, schema, business refusal),
             with the reason code, so that "refused" always leaves a trace.

Bodies are stored as msgpack bytes (BlobField): the wire already speaks msgpack, and bodies may
carry ``bytes`` values (card images, challenges) that JSON cannot hold without re-encoding.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import msgpack
import peewee

from store.commit_rows import append_at_commit, current_rows, rows_at_commit
from store.db import is_sqlite, translate_errors
from store.models import BaseModel

__all__ = ["Inbox", "Outbox", "OutboxEntry", "PeeweeJournal", "Refusal"]

T = TypeVar("T")


class Inbox(BaseModel):
    """受信済み (applied): durable messages whose effect has been committed."""

    msg_id = peewee.CharField(max_length=64, primary_key=True)
    sender = peewee.CharField(max_length=64)
    type = peewee.CharField(max_length=64)
    received_at = peewee.DoubleField()

    class Meta:
        table_name = "inbox"


class Outbox(BaseModel):
    """送信待ち (to relay): onward notices, sealed only when relayed so they never expire."""

    seq = peewee.BigAutoField()
    msg_id = peewee.CharField(max_length=64, unique=True)
    recipient = peewee.CharField(max_length=64)
    type = peewee.CharField(max_length=64)
    body = peewee.BlobField()
    created_at = peewee.DoubleField()
    correlation_id = peewee.CharField(max_length=64, null=True)
    sent_at = peewee.DoubleField(null=True)

    class Meta:
        table_name = "outbox"
        # outbox_pending and outbox_depth ask "sent_at IS NULL ORDER BY seq": this index answers
        # both without touching the (growing) set of sent rows.
        indexes = ((("sent_at", "seq"), False),)


class Refusal(BaseModel):
    """受信拒否 (refused): what was refused, from whom, and why (a stable reason code)."""

    id = peewee.BigAutoField()
    msg_id = peewee.CharField(max_length=64, null=True)
    sender = peewee.CharField(max_length=64, null=True)
    type = peewee.CharField(max_length=64, null=True)
    reason = peewee.CharField(max_length=64, index=True)
    detail = peewee.TextField()
    at = peewee.DoubleField(index=True)

    class Meta:
        table_name = "refusal"


JOURNAL_MODELS: tuple[type[BaseModel], ...] = (Inbox, Outbox, Refusal)
"""Every node role has these tables (store/schema.py adds them to each role)."""


class OutboxEntry:
    """One onward notice waiting to be relayed (the protocol's ``OutboxEntry``).

    `packed` is the body as stored; `body` decodes it on first use. The relay seals `packed`
    as it is (spliced into its bundle), so most rows are never decoded at all.
    """

    __slots__ = (
        "_body",
        "correlation_id",
        "created_at",
        "msg_id",
        "packed",
        "recipient",
        "seq",
        "type",
    )

    def __init__(
        self,
        seq: int,
        msg_id: str,
        recipient: str,
        type: str,
        packed: bytes,
        created_at: float,
        correlation_id: str | None,
    ) -> None:
        self.seq = seq
        self.msg_id = msg_id
        self.recipient = recipient
        self.type = type
        self.packed = packed
        self.created_at = created_at
        self.correlation_id = correlation_id
        self._body: dict[str, Any] | None = None

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            self._body = unpack_body(self.packed)
        return self._body

    def __repr__(self) -> str:
        return f"OutboxEntry(seq={self.seq}, msg_id={self.msg_id!r}, type={self.type!r})"


def pack_body(body: dict[str, Any]) -> bytes:
    """msgpack with the bin type, so ``bytes`` and ``str`` stay distinct on the way back."""
    return msgpack.packb(body, use_bin_type=True)


def unpack_body(data: bytes | memoryview) -> dict[str, Any]:
    # psycopg2 returns BYTEA as memoryview; msgpack accepts any buffer.
    return msgpack.unpackb(data, raw=False)


class PeeweeJournal:
    """The ``Journal`` protocol over one peewee database.

    Every query runs against the database given here (not the process-wide proxy), so a journal
    is always the same connection as the ``atomic()`` it hands out; the node runtime passes the
    database it bound with `store.db.open_database`, and the handler's own store writes then
    share the transaction on the same thread.
    """

    MAX_DEFERRED_MARKS = 4096
    """Relayed rows whose sent mark may wait for the service's next commit; beyond this many
    the relay waits for the write lock itself (bounds memory and the pending query)."""

    def __init__(self, db: peewee.Database | peewee.DatabaseProxy) -> None:
        self._db = db
        # SQLite only: rows the broker confirmed whose sent mark is not written yet (seq →
        # sent_at). See outbox_mark_sent.
        self._deferred: dict[int, float] = {}
        self._marks_lock = threading.Lock()

    @property
    def database(self) -> peewee.Database | peewee.DatabaseProxy:
        return self._db

    @contextmanager
    def atomic(self) -> Iterator[Any]:
        """One transaction; nested inside another it is a savepoint (peewee's atomic).

        On SQLite a top-level transaction begins IMMEDIATE (store.db.ImmediateSqliteDatabase),
        because a handler reads before it writes while other threads of the node write too. A
        top-level transaction also writes the sent marks the relay could not write itself
        (see `outbox_mark_sent`); they count as written only once it commits. It also writes, just
        before its commit, the append-only rows its handlers left for it (store.commit_rows).
        """
        db = self._db
        if db.in_transaction():
            with db.atomic() as tx:
                yield tx
            return
        with db.atomic() as tx:
            written = self._write_deferred()
            with rows_at_commit(db):
                yield tx
        self._forget_deferred(written)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint inside the open transaction, in raw SQL.

        The service takes one per handled notice; peewee's nested `atomic()` costs six times
        the statements themselves (a uuid name, its own bookkeeping). One fixed name is enough:
        SQLite and PostgreSQL both resolve a repeated savepoint name to the innermost one, so
        these nest with each other and with peewee's own savepoints.
        """
        cursor = self._db.cursor()
        with translate_errors():
            cursor.execute('SAVEPOINT "juki_item"')
        rows = current_rows(self._db)
        mark = rows.mark() if rows is not None else 0
        try:
            yield
        except BaseException:
            with translate_errors():
                cursor.execute('ROLLBACK TO SAVEPOINT "juki_item"')
                cursor.execute('RELEASE SAVEPOINT "juki_item"')
            if rows is not None:
                rows.undo_to(mark)  # rows appended for the commit went with the savepoint
            raise
        with translate_errors():
            cursor.execute('RELEASE SAVEPOINT "juki_item"')

    def inbox_contains(self, msg_id: str) -> bool:
        # asked for every durable message received (the replay check): raw SQL, one index probe
        db = self._db
        with translate_errors():
            row = db.execute_sql(
                f'SELECT 1 FROM "inbox" WHERE "msg_id" = {db.param} LIMIT 1', (msg_id,)
            ).fetchone()
        return row is not None

    def inbox_add(self, msg_id: str, sender: str, type: str, received_at: float) -> None:
        """Record that `msg_id` has been applied.

        Raises:
            DuplicateKey: the id is already there (a replay racing past `inbox_contains`); the
                caller's transaction must be rolled back, which undoes the replayed effect.
        """
        db = self._db
        p = db.param
        with translate_errors():
            db.execute_sql(
                f'INSERT INTO "inbox" ("msg_id", "sender", "type", "received_at") '
                f"VALUES ({p}, {p}, {p}, {p})",
                (msg_id, sender, type, received_at),
            )

    def inbox_seen(self, msg_ids: list[str]) -> set[str]:
        """Which of `msg_ids` are in the inbox: one query per bundle instead of one per item."""
        if not msg_ids:
            return set()
        db = self._db
        found: set[str] = set()
        with translate_errors():
            for chunk in _chunks(msg_ids, 500):
                marks = ", ".join([db.param] * len(chunk))
                rows = db.execute_sql(
                    f'SELECT "msg_id" FROM "inbox" WHERE "msg_id" IN ({marks})', chunk
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def inbox_add_many(self, rows: list[tuple[str, str, str, float]]) -> None:
        """inbox_add for many rows in one statement (a bundle's items, applied without
        savepoints). Raises DuplicateKey like inbox_add; the caller rolls back."""
        if not rows:
            return
        db = self._db
        p = db.param
        with translate_errors():
            db.cursor().executemany(
                f'INSERT INTO "inbox" ("msg_id", "sender", "type", "received_at") '
                f"VALUES ({p}, {p}, {p}, {p})",
                rows,
            )

    def inbox_purge(self, before_id: str, *, chunk: int | None = None) -> int:
        """Forget applied ids that sort below `before_id`; returns how many.

        Message ids are ULIDs, which sort by the time they were made, so `before_id` (the
        smallest id of some millisecond) cuts the inbox at that time. Forgetting an id is safe
        only because the service refuses, as ``stale``, every notice whose id is older than the
        inbox keeps ids (broker/service.py): the caller must cut further back than that. Deleted
        in transactions of `chunk` rows (default `PURGE_CHUNK`), oldest first, through the
        primary key, so the write lock is never held for long.
        """
        p = self._db.param
        sql = (
            'DELETE FROM "inbox" WHERE "msg_id" IN (SELECT "msg_id" FROM "inbox" '
            f'WHERE "msg_id" < {p} ORDER BY "msg_id" LIMIT {p})'
        )
        return self._delete_in_chunks(sql, before_id, chunk)

    def _delete_in_chunks(self, sql: str, bound: object, chunk: int | None) -> int:
        """Run `sql` (a DELETE taking the cut `bound` and a row limit) one transaction per
        `chunk` rows until a pass deletes fewer; returns how many went."""
        size = chunk or self.PURGE_CHUNK
        db = self._db
        total = 0
        while True:
            with translate_errors(), db.atomic():
                deleted = db.execute_sql(sql, (bound, size)).rowcount
            total += deleted
            if deleted < size:
                return total

    def outbox_add(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> int:
        """Queue an onward notice; returns its seq (relay order).

        Raw SQL: every applied update writes one or more of these inside the group commit, and
        peewee's query building cost more than the insert itself.
        """
        db = self._db
        with translate_errors():
            row = db.execute_sql(
                _outbox_insert_sql(db.param) + ' RETURNING "seq"',
                (msg_id, recipient, type, pack_body(body), created_at, correlation_id),
            ).fetchone()
        return int(row[0])

    def outbox_add_at_commit(
        self,
        msg_id: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        created_at: float,
        correlation_id: str | None = None,
    ) -> None:
        """`outbox_add` for `ctx.send`: inside this journal's top-level `atomic()` the row is
        written with the transaction's other append-only rows just before it commits
        (store.commit_rows), in the order of these calls; elsewhere at once."""
        db = self._db
        sql = _outbox_insert_sql(db.param)
        params = (msg_id, recipient, type, pack_body(body), created_at, correlation_id)
        if not append_at_commit(db, sql, params):
            with translate_errors():
                db.execute_sql(sql, params)

    def outbox_pending(self, limit: int) -> list[OutboxEntry]:
        """Unsent notices, oldest (lowest seq) first (relayed rows whose mark waits excluded).

        Raw SQL: the relay asks this for every batch it sends, and peewee's row wrapping cost
        more than the read.
        """
        with self._marks_lock:
            skip = list(self._deferred)
        db = self._db
        p = db.param
        where = '"sent_at" IS NULL'
        if skip:
            where += f' AND "seq" NOT IN ({", ".join([p] * len(skip))})'
        with translate_errors():
            rows = db.execute_sql(
                'SELECT "seq", "msg_id", "recipient", "type", "body", "created_at", '
                f'"correlation_id" FROM "outbox" WHERE {where} ORDER BY "seq" LIMIT {int(limit)}',
                skip,
            ).fetchall()
        return [
            OutboxEntry(seq, msg_id, recipient, type_, bytes(body), created_at, corr)
            for seq, msg_id, recipient, type_, body, created_at, corr in rows
        ]

    def outbox_mark_sent(self, seqs: list[int], sent_at: float) -> None:
        """Mark relayed rows (written by the open transaction, if there is one).

        Written on its own, the mark does not wait for the disk (SQLite: synchronous=NORMAL for
        it; PostgreSQL: synchronous_commit off for it). The mark only saves work: if power fails
        before it reaches the disk, the rows are relayed again and the recipients' inboxes drop
        the copies.

        On SQLite the relay keeps the marks here — `outbox_pending` and `outbox_depth` leave
        those rows out — and the service's next transaction writes them (`atomic`), or the relay
        itself once it has nothing to send (`outbox_write_marks`). A write of the relay's own,
        on its own connection, made SQLite drop the service connection's whole page cache (a
        connection discards it whenever another one has written), and at 2,000 updates/s the
        service then read its hot pages back batch after batch: end-to-end p50 went from
        132–144 ms to 129–133 ms without those writes. Only past `MAX_DEFERRED_MARKS` kept marks
        does the relay write them itself, waiting for the write lock.
        """
        if not seqs:
            return
        db = self._db
        if db.in_transaction():
            with translate_errors():
                self._update_sent(dict.fromkeys(seqs, sent_at))
            return
        if not is_sqlite(db):
            with translate_errors(), db.atomic():
                db.execute_sql("SET LOCAL synchronous_commit = off")
                self._update_sent(dict.fromkeys(seqs, sent_at))
            return
        with self._marks_lock:
            self._deferred.update(dict.fromkeys(seqs, sent_at))
            waiting = len(self._deferred)
        if waiting > self.MAX_DEFERRED_MARKS:
            self._flush_deferred(wait=True)

    def outbox_write_marks(self) -> None:
        """Write the kept marks now unless the write lock is taken (the relay, when it has
        nothing to send: the table then says what was sent without waiting for the next
        business transaction)."""
        with self._marks_lock:
            if not self._deferred:
                return
        self._flush_deferred(wait=False)

    def _flush_deferred(self, *, wait: bool) -> None:
        """Write the kept marks in a transaction of this thread. When the write lock is taken
        and `wait` is false, they stay kept for the next transaction."""
        db = self._db
        conn = db.connection()
        timeout = 0
        with translate_errors():
            db.execute_sql("PRAGMA synchronous = NORMAL")
            if not wait:
                timeout = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
                conn.execute("PRAGMA busy_timeout = 0")
            try:
                with db.atomic():
                    written = self._write_deferred()
            except peewee.OperationalError as exc:
                if not wait and "locked" in str(exc):
                    return
                raise
            finally:
                if not wait:
                    conn.execute(f"PRAGMA busy_timeout = {timeout}")
                db.execute_sql("PRAGMA synchronous = FULL")
        self._forget_deferred(written)

    def _write_deferred(self) -> dict[int, float]:
        """Inside an open transaction: write the kept marks; returns what was written."""
        with self._marks_lock:
            if not self._deferred:
                return {}
            marks = dict(self._deferred)
        self._update_sent(marks)
        return marks

    def _forget_deferred(self, written: dict[int, float]) -> None:
        """After the transaction that wrote `written` committed."""
        if not written:
            return
        with self._marks_lock:
            deferred = self._deferred
            for seq in written:
                deferred.pop(seq, None)

    def _update_sent(self, marks: dict[int, float]) -> None:
        by_time: dict[float, list[int]] = {}
        for seq, at in marks.items():
            by_time.setdefault(at, []).append(seq)
        db = self._db
        for at, seqs in by_time.items():
            for chunk in _chunks(sorted(seqs), 500):
                Outbox.update(sent_at=at).where(Outbox.seq.in_(chunk)).execute(db)

    def outbox_depth(self) -> int:
        """How many notices wait to be relayed (shown by ``juki ctl status``).

        Rows relayed whose mark is kept for the next transaction are not waiting. One statement,
        so one snapshot: a kept mark written meanwhile is not subtracted twice.
        """
        with self._marks_lock:
            kept = list(self._deferred)
        query = Outbox.select().where(Outbox.sent_at.is_null())
        if kept:
            query = query.where(Outbox.seq.not_in(kept))
        with translate_errors():
            return int(query.count(self._db))

    def outbox_oldest(self) -> float | None:
        """When the oldest notice still waiting to be relayed was written (None: none waits).

        With the depth, the backlog an operator sees in ``juki ctl status``: how long the
        upstream has been out of reach. The (sent_at, seq) index answers it in one probe.
        """
        with self._marks_lock:
            kept = list(self._deferred)
        query = Outbox.select(Outbox.created_at).where(Outbox.sent_at.is_null())
        if kept:
            query = query.where(Outbox.seq.not_in(kept))
        with translate_errors():
            value = query.order_by(Outbox.seq).limit(1).scalar(self._db)
        return None if value is None else float(value)

    PURGE_CHUNK = 5_000
    """Relayed rows deleted per transaction by `outbox_purge_sent`."""

    def outbox_purge_sent(self, before: float, *, chunk: int | None = None) -> int:
        """Delete relayed notices sent before `before`; they are only kept to debug a relay.

        In transactions of `chunk` rows (default `PURGE_CHUNK`), oldest first: a day of relayed
        rows at a sustained 2,000/s is over a hundred million, and one DELETE of them all would
        hold the store's write lock (and the service loop behind it) for minutes.
        """
        p = self._db.param
        sql = (
            'DELETE FROM "outbox" WHERE "seq" IN (SELECT "seq" FROM "outbox" '
            f'WHERE "sent_at" IS NOT NULL AND "sent_at" < {p} ORDER BY "sent_at", "seq" '
            f"LIMIT {p})"
        )
        return self._delete_in_chunks(sql, before, chunk)

    def record_refusal(
        self,
        msg_id: str | None,
        sender: str | None,
        type: str | None,
        reason: str,
        detail: str,
        at: float,
    ) -> None:
        # Raw SQL against this journal's database: a model-built INSERT decides on RETURNING
        # from whatever database the model was last bound to, which need not be this one.
        db = self._db
        p = db.param
        with translate_errors():
            db.execute_sql(
                f'INSERT INTO "refusal" ("msg_id", "sender", "type", "reason", "detail", "at") '
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                (msg_id, sender, type, reason, detail, at),
            )

    def refusals(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Latest refusals first, as plain dicts (for ``juki ctl`` and the operator's log view)."""
        query = Refusal.select().order_by(Refusal.id.desc()).limit(limit)
        if since is not None:
            query = query.where(Refusal.at >= since)
        with translate_errors():
            return list(query.dicts().execute(self._db))


@functools.cache
def _outbox_insert_sql(p: str) -> str:
    """The outbox row's INSERT for a driver's parameter mark (shared by both ways of adding)."""
    return (
        f'INSERT INTO "outbox" ("msg_id", "recipient", "type", "body", "created_at", '
        f'"correlation_id") VALUES ({p}, {p}, {p}, {p}, {p}, {p})'
    )


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
