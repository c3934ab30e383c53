"""データベース接続 (database connection): one peewee database per node, and the store errors.

Every model in store/ binds to `database_proxy`, a deferred peewee proxy; a node process opens its
own database from its store URL (appliance.toml) and binds the proxy once at start-up. Because
the proxy is process-global, one process holds one node's store at a time; tests that need two
stores open them one after the other (or in separate processes, as the real nodes run).

URLs:
    ``sqlite:///var/db/cs.041009.db``      relative path (to the working directory)
    ``sqlite:////abs/path/node.db``        absolute path
    ``sqlite:///:memory:``                 in-memory (tests only: nothing survives)
    ``postgresql://user@host:port/dbname`` PostgreSQL through psycopg2 (``postgres://`` too);
                                           query-string items are passed to the driver.

SQLite pragmas are fixed here (`SQLITE_PRAGMAS`) rather than taken from the URL, because they
carry the seed's promise that a committed change is never lost; see the comments on each.

Error tree (foreign exceptions from peewee, sqlite3 and psycopg2 are translated at this seam by
`translate_errors`, so callers above the store never catch a peewee class)::

    StoreError                 base; `title` is what the terminal shows
    ├── StoreUnavailable       the database cannot be opened or reached
    ├── DuplicateKey           a unique constraint refused the write (inbox replay, 個人番号 reuse)
    ├── IntegrityViolation     another constraint (NOT NULL, foreign key, CHECK) refused the write
    ├── SchemaError            tables missing, or the stored schema version is newer than the code
    └── RuleViolation          a business rule the store itself enforces (carries `rule`, e.g. V-7)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import peewee

from store import commit_rows

__all__ = [
    "NODE_WAL_BACKSTOP_PAGES",
    "NODE_WAL_SIZE_LIMIT",
    "SQLITE_PRAGMAS",
    "DuplicateKey",
    "IntegrityViolation",
    "RuleViolation",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
    "bind_database",
    "checkpoint_wal",
    "current_database",
    "database_proxy",
    "is_postgresql",
    "is_sqlite",
    "open_database",
    "translate_errors",
]

database_proxy = peewee.DatabaseProxy()
"""The deferred database every store model is bound to; see `bind_database`."""

SQLITE_PRAGMAS: tuple[tuple[str, object], ...] = (
    # Readers never block the writer and the writer never blocks readers: the node's service
    # thread writes while its control plane and the terminal's queries read.
    ("journal_mode", "wal"),
    # FULL syncs the WAL on every commit. NORMAL (the usual WAL setting) may lose the last
    # transactions on power loss, and a lost commit after the broker was acked is a lost notice.
    ("synchronous", "full"),
    ("foreign_keys", 1),
    # A second process (juki ctl, a purge job) waits up to 10 s for the write lock instead of
    # failing at once with "database is locked".
    ("busy_timeout", 10_000),
    # 64 MiB page cache (negative = KiB): the 4情報 indexes of a city of a million stay hot.
    ("cache_size", -65_536),
    # Sorts for CREATE INDEX after a bulk load run in memory instead of temp files.
    ("temp_store", "memory"),
)

NODE_WAL_BACKSTOP_PAGES = 16_384
"""A node daemon's own connections checkpoint only past this many WAL pages (64 MiB), a backstop:
its checkpoints run on a thread of their own (`checkpoint_wal`, nodes/runtime.py). SQLite's
default, a checkpoint inside whichever commit takes the WAL past 1,000 pages, copied pages back
into the database file on the service thread, between a batch's commit and its ack. A
checkpoint a second copies each page once however often it was rewritten meanwhile (the tail
pages of the history, outbox and log tables and the hot index pages change in every group
commit): replaying 10,000 updates into the municipal CS took 12,800 page copies instead of
29,700."""

NODE_WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""After a checkpoint lets the WAL start over, SQLite truncates the file to this size."""


class StoreError(Exception):
    """Base of the store's errors."""

    title = "記録エラー"


class StoreUnavailable(StoreError):
    """The database cannot be opened or reached."""

    title = "データベースに接続できません"


class DuplicateKey(StoreError):
    """A unique constraint refused the write.

    On PostgreSQL the surrounding transaction is aborted by the failed statement; the caller must
    let the `atomic()` block fail (or wrap the write in a nested savepoint) before going on.
    """

    title = "重複登録"


class IntegrityViolation(StoreError):
    """A NOT NULL, foreign-key or CHECK constraint refused the write."""

    title = "整合性エラー"


class SchemaError(StoreError):
    """The tables are missing, or the database was written by a newer version of juki."""

    title = "スキーマエラー"


class RuleViolation(StoreError):
    """A business rule enforced inside the store refused the operation.

    Attributes:
        rule: the stable rule id from seed-digest.md §4 (e.g. ``"V-7"``), logged and tested.
    """

    title = "業務規則違反"

    def __init__(self, rule: str, message: str, title: str | None = None) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        if title is not None:
            self.title = title


class _Savepoint(peewee._savepoint):  # type: ignore[misc]
    """A peewee savepoint whose rollback also drops the rows appended for the commit inside it
    (store.commit_rows), as it undoes the writes made inside it."""

    def __enter__(self) -> Any:
        self._rows = commit_rows.current_rows(self.db)
        self._mark = self._rows.mark() if self._rows is not None else 0
        return super().__enter__()

    def rollback(self, begin: bool = True) -> None:
        super().rollback(begin)
        rows = getattr(self, "_rows", None)
        if rows is not None:
            rows.undo_to(self._mark)


class _Transaction(peewee._transaction):  # type: ignore[misc]
    """A peewee transaction that writes the rows appended for its commit (store.commit_rows)
    before an explicit mid-block commit and drops them with a rollback."""

    def commit(self, begin: bool = True) -> None:
        rows = commit_rows.current_rows(self.db)
        if rows is not None:
            with translate_errors():
                rows.flush()
        super().commit(begin)

    def rollback(self, begin: bool = True) -> None:
        super().rollback(begin)
        rows = commit_rows.current_rows(self.db)
        if rows is not None:
            rows.undo_to(0)


class _CommitRowsAware:
    """Transactions and savepoints that keep store.commit_rows' batch in step with them."""

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        return _Transaction(self, *args, **kwargs)

    def savepoint(self) -> Any:
        return _Savepoint(self)


class PostgresqlDatabase(_CommitRowsAware, peewee.PostgresqlDatabase):
    """PostgreSQL through psycopg2 (see `_CommitRowsAware`)."""


class ImmediateSqliteDatabase(_CommitRowsAware, peewee.SqliteDatabase):
    """SQLite whose top-level transactions begin IMMEDIATE.

    A node writes its store from several threads (the service loop, the outbox relay, control
    commands, the retention job). A deferred transaction that has read a snapshot cannot upgrade
    to a writer once another connection committed after that snapshot: SQLite fails at once with
    "database is locked" (SQLITE_BUSY_SNAPSHOT) instead of waiting its busy timeout. Taking the
    write lock when the transaction begins makes writers queue on the busy timeout instead.
    Nested atomic blocks are savepoints and unaffected; plain reads need no transaction.
    """

    def atomic(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "lock_type" not in kwargs:
            kwargs["lock_type"] = "IMMEDIATE"
        return super().atomic(*args, **kwargs)


def open_database(
    url: str, *, bind: bool = True, background_checkpoints: bool = False
) -> peewee.Database:
    """Open (lazily connect) the database a store URL names.

    Args:
        url: a ``sqlite:///`` or ``postgresql://`` URL (see the module docstring).
        bind: also bind `database_proxy` to it, which is what a node process wants; tests that
            only inspect a database pass False.
        background_checkpoints: SQLite: the caller runs `checkpoint_wal` on a thread of its
            own, so commits leave the WAL to it up to `NODE_WAL_BACKSTOP_PAGES`.

    Raises:
        StoreError: the URL's scheme is not supported.
        StoreUnavailable: the SQLite file's directory cannot be created.
    """
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    options: dict[str, Any] = {key: _coerce(value) for key, value in parse_qsl(parsed.query)}
    db: peewee.Database
    if scheme == "sqlite":
        path = unquote(parsed.path[1:]) if parsed.path else ""
        if not path:
            raise StoreError(f"SQLite URL has no path: {url!r}")
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the directory of {path}: {exc}") from exc
        pragmas = list(SQLITE_PRAGMAS)
        if background_checkpoints:
            pragmas += [
                ("wal_autocheckpoint", NODE_WAL_BACKSTOP_PAGES),
                ("journal_size_limit", NODE_WAL_SIZE_LIMIT),
            ]
        db = ImmediateSqliteDatabase(path, pragmas=pragmas, timeout=10, **options)
    elif scheme in ("postgresql", "postgres"):
        dbname = unquote(parsed.path[1:])
        if not dbname:
            raise StoreError(f"PostgreSQL URL names no database: {url!r}")
        params: dict[str, Any] = {}
        if parsed.hostname:
            params["host"] = parsed.hostname
        if parsed.port:
            params["port"] = parsed.port
        if parsed.username:
            params["user"] = unquote(parsed.username)
        if parsed.password:
            params["password"] = unquote(parsed.password)
        params.update(options)
        db = PostgresqlDatabase(dbname, **params)
    else:
        raise StoreError(f"unsupported store URL scheme {parsed.scheme!r} in {url!r}")
    if bind:
        bind_database(db)
    return db


def checkpoint_wal(db: peewee.Database) -> tuple[int, int, int]:
    """Copy the WAL's committed pages into the SQLite database file, without blocking writers
    or readers (PASSIVE); returns SQLite's (busy, WAL pages, pages checkpointed).

    Pages a reader still needs from the WAL stay there until a later call. Run it on a thread
    of its own: SQLite does the copying with the GIL released.
    """
    with translate_errors():
        row = db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    busy, pages, copied = (int(v) for v in row)
    return busy, pages, copied


def _coerce(value: str) -> object:
    return int(value) if value.isdigit() else value


def bind_database(db: peewee.Database) -> None:
    """Make `db` the database every store model uses in this process."""
    database_proxy.initialize(db)


def current_database() -> peewee.Database:
    """The database `database_proxy` is bound to.

    Raises:
        StoreUnavailable: no database was bound yet (the node forgot `open_database`).
    """
    db = database_proxy.obj
    if db is None:
        raise StoreUnavailable("no store database is bound in this process")
    return db


def is_sqlite(db: peewee.Database | peewee.DatabaseProxy) -> bool:
    """True for SQLite, which some fast paths (raw executemany, EXPLAIN QUERY PLAN) special-case."""
    return isinstance(_unwrap(db), peewee.SqliteDatabase)


def is_postgresql(db: peewee.Database | peewee.DatabaseProxy) -> bool:
    return isinstance(_unwrap(db), peewee.PostgresqlDatabase)


def _unwrap(db: peewee.Database | peewee.DatabaseProxy) -> peewee.Database:
    if isinstance(db, peewee.DatabaseProxy):
        return current_database()
    return db


class _TranslateErrors(contextlib.ContextDecorator):
    # A plain class, not @contextmanager: it sits on every lookup, and a generator-based
    # context manager costs several times more per use.
    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc_type is None or exc is None:
            return None
        if not issubclass(exc_type, _PEEWEE_ERRORS):
            # A driver exception from a raw cursor (the bulk paths): let peewee's own mapping
            # of DB-API class names turn it into a peewee error first.
            try:
                _PEEWEE_WRAPPER.__exit__(exc_type, exc, tb)
            except peewee.PeeweeException as wrapped:
                exc = wrapped
            else:
                return None
        if isinstance(exc, peewee.IntegrityError):
            if _is_unique_violation(exc):
                raise DuplicateKey(str(exc)) from exc
            raise IntegrityViolation(str(exc)) from exc
        if _is_missing_schema(exc):
            raise SchemaError(f"{exc} (was init_store run for this node?)") from exc
        if isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
            raise StoreUnavailable(str(exc)) from exc
        raise StoreError(str(exc)) from exc


_PEEWEE_ERRORS = (peewee.DatabaseError, peewee.InterfaceError)
_PEEWEE_WRAPPER = getattr(peewee, "__exception_wrapper__")  # noqa: B009 (a dunder mypy cannot see)
_TRANSLATOR = _TranslateErrors()


def translate_errors() -> _TranslateErrors:
    """Turn peewee / driver exceptions raised inside the block into the store's error tree.

    Usable as a decorator too. The original exception stays attached as ``__cause__`` for the
    log, never in the title shown to an operator.
    """
    return _TRANSLATOR


def _is_unique_violation(exc: peewee.IntegrityError) -> bool:
    # psycopg2 exposes the SQLSTATE (23505 is unique_violation), sqlite3 only a message.
    original = _driver_error(exc)
    pgcode = getattr(original, "pgcode", None)
    if pgcode is not None:
        return pgcode == "23505"
    text = str(original).upper()
    return "UNIQUE" in text or "PRIMARY KEY" in text


def _is_missing_schema(exc: BaseException) -> bool:
    # 42P01 undefined_table, 42703 undefined_column; SQLite says "no such table/column".
    original = _driver_error(exc)
    pgcode = getattr(original, "pgcode", None)
    if pgcode is not None:
        return pgcode in ("42P01", "42703")
    return "no such table" in str(original) or "no such column" in str(original)


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind a peewee one (peewee re-raises it while handling it,
    so it is the implicit ``__context__``; older peewee also passed it as ``args[0]``)."""
    if exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    if isinstance(exc.__context__, BaseException):
        return exc.__context__
    return exc
