"""Store fixtures: every store test runs on SQLite and on the real PostgreSQL.

PostgreSQL: one uniquely named database per test session (dropped at the end), and inside it one
fresh schema per test, selected through the URL's ``options=-c search_path=...`` (which also
exercises driver options passed through `open_database`). Each test therefore starts from an
empty store on both engines, like SQLite's tmp_path file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import peewee
import psycopg2
import pytest

from store.db import open_database

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{dbname}"

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this session; yields its name."""
    name = f"juki_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield name
    finally:
        conn = psycopg2.connect(PG_ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(params=ENGINES)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL naming an empty store on the parametrized engine."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "node" / "store.db"
        yield f"sqlite:///{path}"
        return
    dbname = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(PG_ADMIN_DSN.replace("dbname=postgres", f"dbname={dbname}"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    try:
        options = quote(f"-c search_path={schema}")
        yield PG_URL.format(dbname=dbname) + f"?options={options}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@pytest.fixture
def empty_db(store_url: str) -> Iterator[peewee.Database]:
    """The store database opened and bound, with no tables yet."""
    db = open_database(store_url)
    db.connect()
    try:
        yield db
    finally:
        if db.in_transaction():
            db.rollback()
        db.close()


@pytest.fixture
def db(empty_db: peewee.Database) -> peewee.Database:
    """The store database with every store table created (all roles)."""
    from store.schema import all_models

    empty_db.create_tables(all_models())
    return empty_db
