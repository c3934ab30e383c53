"""Opening stores, the fixed SQLite pragmas, durability and the error tree."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import peewee
import pytest

from store.db import (
    NODE_WAL_BACKSTOP_PAGES,
    DuplicateKey,
    IntegrityViolation,
    SchemaError,
    StoreError,
    StoreUnavailable,
    checkpoint_wal,
    current_database,
    database_proxy,
    is_postgresql,
    is_sqlite,
    open_database,
    translate_errors,
)
from store.models import BaseModel


class Thing(BaseModel):
    name = peewee.CharField(unique=True)
    size = peewee.IntegerField()

    class Meta:
        table_name = "thing"


@pytest.fixture
def things(empty_db: peewee.Database) -> peewee.Database:
    empty_db.create_tables([Thing])
    return empty_db


def test_sqlite_creates_its_directory_and_sets_the_fixed_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "var" / "db" / "cs.041009.db"
    db = open_database(f"sqlite:///{path}", bind=False)
    try:
        assert path.parent.is_dir()
        pragmas = {
            name: db.execute_sql(f"PRAGMA {name}").fetchone()[0]
            for name in (
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "cache_size",
            )
        }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 10_000,
            "cache_size": -65_536,
        }
        assert path.exists()
    finally:
        db.close()


def _fill(db: peewee.Database, transactions: int, pages_each: int) -> None:
    """Commit `transactions` transactions of about `pages_each` 4 KiB pages each."""
    db.execute_sql("CREATE TABLE IF NOT EXISTS blob (b BLOB)")
    for _ in range(transactions):
        with db.atomic():
            for _ in range(pages_each):
                db.execute_sql("INSERT INTO blob VALUES (randomblob(4000))")


def test_by_default_a_commit_past_1000_wal_pages_checkpoints_itself(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    db = open_database(f"sqlite:///{path}", bind=False)
    try:
        _fill(db, 1, 10)
        before = path.stat().st_size
        _fill(db, 3, 500)
        assert path.stat().st_size > before + 1000 * 4096  # copied into the file by a commit
    finally:
        db.close()


def test_a_node_store_leaves_checkpoints_to_checkpoint_wal(tmp_path: Path) -> None:
    """Commits do not copy pages back (that is the node's checkpoint thread's work), until
    the backstop; `checkpoint_wal` then copies every committed page."""
    path = tmp_path / "node.db"
    db = open_database(f"sqlite:///{path}", bind=False, background_checkpoints=True)
    try:
        assert db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == NODE_WAL_BACKSTOP_PAGES
        _fill(db, 1, 10)
        before = path.stat().st_size
        _fill(db, 3, 500)
        assert path.stat().st_size == before  # everything is still in the WAL only
        busy, pages, copied = checkpoint_wal(db)
        assert busy == 0 and pages >= 1500 and copied == pages
        assert path.stat().st_size > before + 1500 * 4096
        assert checkpoint_wal(db)[2] == pages  # nothing new: nothing more to copy
    finally:
        db.close()
    # the file alone (no WAL) holds every committed row now
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "node.db").write_bytes(path.read_bytes())
    alone = open_database(f"sqlite:///{tmp_path / 'alone' / 'node.db'}", bind=False)
    try:
        assert alone.execute_sql("SELECT count(*) FROM blob").fetchone()[0] == 1510
    finally:
        alone.close()


def test_checkpoint_wal_does_not_wait_for_a_reader(tmp_path: Path) -> None:
    """PASSIVE: a reader holding an old snapshot keeps its pages in the WAL; the checkpoint
    copies what it may and returns, and a later one copies the rest."""
    path = tmp_path / "node.db"
    db = open_database(f"sqlite:///{path}", bind=False, background_checkpoints=True)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        _fill(db, 1, 10)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM blob").fetchone() == (10,)
        _fill(db, 1, 100)
        busy, pages, copied = checkpoint_wal(db)
        assert copied < pages  # the reader's snapshot stops it short
        reader.execute("COMMIT")
        busy, pages, copied = checkpoint_wal(db)
        assert busy == 0 and copied == pages
    finally:
        reader.close()
        db.close()


def test_relative_sqlite_paths_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = open_database("sqlite:///var/db/node.db", bind=False)
    db.connect()
    db.close()
    assert (tmp_path / "var" / "db" / "node.db").exists()


def test_open_binds_the_proxy_unless_asked_not_to(tmp_path: Path) -> None:
    bound = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    assert current_database() is bound and database_proxy.obj is bound
    other = open_database(f"sqlite:///{tmp_path / 'b.db'}", bind=False)
    assert current_database() is bound and other is not bound
    assert is_sqlite(bound) and is_sqlite(database_proxy) and not is_postgresql(bound)


@pytest.mark.postgres
def test_postgresql_url_names_user_host_port_and_database(pg_database: str) -> None:
    db = open_database(f"postgresql://postgres@127.0.0.1:5432/{pg_database}", bind=False)
    try:
        assert db.execute_sql("SELECT current_database(), current_user").fetchone() == (
            pg_database,
            "postgres",
        )
        assert is_postgresql(db)
    finally:
        db.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/juki", "sqlite://", "postgresql://postgres@127.0.0.1:5432/", "x"],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        open_database(url, bind=False)


@pytest.mark.postgres
def test_unreachable_postgresql_is_store_unavailable() -> None:
    db = open_database("postgresql://postgres@127.0.0.1:1/juki?connect_timeout=2", bind=False)
    with pytest.raises(StoreUnavailable) as info, translate_errors():
        db.connect()
    assert info.value.title == "データベースに接続できません"


def test_unwritable_sqlite_directory_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        open_database(f"sqlite:///{blocker / 'db' / 'x.db'}", bind=False)


def test_duplicate_is_duplicate_key(things: peewee.Database) -> None:
    Thing.create(name="a", size=1)
    with pytest.raises(DuplicateKey) as info, translate_errors(), things.atomic():
        Thing.create(name="a", size=2)
    assert isinstance(info.value.__cause__, peewee.IntegrityError)
    assert info.value.title == "重複登録"


def test_not_null_is_integrity_violation(things: peewee.Database) -> None:
    with pytest.raises(IntegrityViolation), translate_errors(), things.atomic():
        Thing.insert(name="b", size=None).execute()


def test_missing_table_is_schema_error(empty_db: peewee.Database) -> None:
    with pytest.raises(SchemaError), translate_errors():
        Thing.select().count()


def test_translate_errors_works_as_a_decorator_and_ignores_other_errors(
    things: peewee.Database,
) -> None:
    @translate_errors()
    def insert_twice() -> None:
        with things.atomic():
            Thing.create(name="c", size=1)
            Thing.create(name="c", size=1)

    with pytest.raises(DuplicateKey):
        insert_twice()
    with pytest.raises(KeyError), translate_errors():
        raise KeyError("not ours to translate")


def test_raw_driver_errors_are_translated_too(things: peewee.Database) -> None:
    cursor = things.cursor()
    sql = 'INSERT INTO "thing" ("name", "size") VALUES ' + (
        "(?, ?)" if is_sqlite(things) else "(%s, %s)"
    )
    with pytest.raises(DuplicateKey), translate_errors(), things.atomic():
        cursor.executemany(sql, [("d", 1), ("d", 2)])


_WRITER = textwrap.dedent(
    """
    import os, sys
    from store.db import open_database
    db = open_database(sys.argv[1])
    db.execute_sql("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
    with db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
    db.execute_sql("BEGIN")
    db.execute_sql("INSERT INTO t VALUES (2)")
    print("ready", flush=True)
    sys.stdin.readline()  # killed here, with v=2 uncommitted
    """
)


def test_sqlite_commit_survives_a_killed_process_and_uncommitted_work_does_not(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert (tmp_path / "crash.db-wal").exists()  # the commit is still only in the WAL
    db = open_database(url, bind=False)
    try:
        assert db.execute_sql("SELECT v FROM t").fetchall() == [(1,)]
    finally:
        db.close()
