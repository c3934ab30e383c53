"""記録の速度 (store speed): bulk load, 住民票コード lookup and 4情報 search at city scale.

For N synthetic residents (store.population, default 1,100,000 — 仙台市's size) this measures,
on SQLite or PostgreSQL, in one run:

- load: ``store.identity.bulk_load_identities`` rows/s (from records), against a plain driver
  load of the same rows, already converted to tuples, into an equivalent table (same columns,
  same indexes built the same way: after the load) — sqlite3 ``executemany`` or psycopg2
  ``execute_values``;
- size of the database (SQLite file + WAL, or PostgreSQL's total relation size);
- lookup by 住民票コード: ``store.identity.get_by_resident_code`` p50/p99 over random codes,
  against a plain driver SELECT of the same row on the same database;
- 4情報 search p50/p99 via ``store.search.search_4info`` for every allowed combination
  (氏名+住所, 氏名+生年月日, かな+住所, かな+生年月日, each with and without 性別), using the
  full name, the person's 町 as the address prefix, and the birth date of random residents.

Goals (issue "Store and domain rules"): load ≥ 0.5 × plain, lookup ≥ 0.25 × plain (throughput),
lookup p99 ≤ 1 ms, search p99 ≤ 5 ms. Results go to bench/results/store.json, one entry per
engine.

    .venv/bin/python bench/store.py                       # SQLite, 1.1 M residents
    .venv/bin/python bench/store.py --residents 100000 \\
        --db postgresql://postgres@127.0.0.1:5432/juki_bench   # created and dropped
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store.db import SQLITE_PRAGMAS, open_database  # noqa: E402
from store.identity import bulk_load_identities, get_by_resident_code  # noqa: E402
from store.models import EPOCH, IdentityRow  # noqa: E402
from store.population import generate  # noqa: E402
from store.records import IdentityRecord  # noqa: E402
from store.schema import init_store  # noqa: E402
from store.search import search_4info  # noqa: E402

_US = timedelta(microseconds=1)
GOALS = {"load_ratio": 0.5, "lookup_ratio": 0.25, "lookup_p99_ms": 1.0, "search_p99_ms": 5.0}
COLUMNS = [f.column_name for f in IdentityRow._meta.sorted_fields if f.name != "id"]
_TOWN = re.compile(r"^(.*?)(?=[一二三四五六七八九十]+丁目|\d)")


def _pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e6


def _plain_params(r: IdentityRecord) -> tuple[Any, ...]:
    """The record as driver parameters, written by hand as a plain loader would."""
    out = []
    for name in COLUMNS:
        v = getattr(r, name)
        if isinstance(v, date) and not hasattr(v, "hour"):
            v = v.isoformat()
        elif hasattr(v, "hour"):
            v = (v - EPOCH) // _US
        elif hasattr(v, "value"):
            v = v.value
        out.append(v)
    return tuple(out)


# --- engines --------------------------------------------------------------------------------


class Engine(ABC):
    name: str

    @abstractmethod
    def store_url(self) -> str: ...

    @abstractmethod
    def plain_load(self, rows: list[tuple[Any, ...]]) -> float: ...

    @abstractmethod
    def plain_lookup(self, codes: Sequence[str]) -> list[float]: ...

    @abstractmethod
    def size_bytes(self) -> int: ...

    def close(self) -> None:  # an optional hook: only engines holding a server need it
        return None


class SqliteEngine(Engine):
    name = "sqlite"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="juki-bench-"))
        self.path = self.dir / "store.db"
        self.plain_path = self.dir / "plain.db"

    def store_url(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self, path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        for key, value in SQLITE_PRAGMAS:  # the same durability settings as the store
            conn.execute(f"PRAGMA {key} = {value}")
        return conn

    def plain_load(self, rows: list[tuple[Any, ...]]) -> float:
        conn = self._connect(self.plain_path)
        # the same table and indexes as the store's identity table
        ddl = sqlite3.connect(self.path).execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'identity' AND sql IS NOT NULL"
        )
        statements = [s for (s,) in ddl]
        table = [s for s in statements if s.startswith("CREATE TABLE")]
        indexes = [s for s in statements if not s.startswith("CREATE TABLE")]
        conn.execute(table[0])
        unique = [s for s in indexes if "UNIQUE" in s]
        for s in unique:
            conn.execute(s)
        marks = ", ".join("?" * len(COLUMNS))
        sql = f"INSERT INTO identity ({', '.join(COLUMNS)}) VALUES ({marks})"
        start = time.perf_counter()
        conn.execute("BEGIN")
        for i in range(0, len(rows), 20_000):
            conn.executemany(sql, rows[i : i + 20_000])
        for s in indexes:
            if s not in unique:
                conn.execute(s)
        conn.execute("COMMIT")
        conn.execute("ANALYZE identity")
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    def plain_lookup(self, codes: Sequence[str]) -> list[float]:
        conn = self._connect(self.path)
        sql = f"SELECT {', '.join(COLUMNS)} FROM identity WHERE resident_code = ?"
        cur = conn.cursor()
        out = [_timed(lambda c=c: cur.execute(sql, (c,)).fetchone()) for c in codes]
        conn.close()
        return out

    def size_bytes(self) -> int:
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        return sum(p.stat().st_size for p in self.dir.glob("store.db*"))

    def close(self) -> None:
        for p in self.dir.iterdir():
            p.unlink()
        self.dir.rmdir()


class PostgresEngine(Engine):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg2

        self.psycopg2 = psycopg2
        self.url = url
        parsed = urlparse(url)
        self.dbname = parsed.path.lstrip("/")
        self.dsn = dict(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
        )
        admin = psycopg2.connect(dbname="postgres", **self.dsn)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{self.dbname}"')
        admin.close()

    def store_url(self) -> str:
        return self.url

    def _connect(self) -> Any:
        return self.psycopg2.connect(dbname=self.dbname, **self.dsn)

    def plain_load(self, rows: list[tuple[Any, ...]]) -> float:
        from psycopg2.extras import execute_values

        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute("CREATE SCHEMA plain")
            cur.execute("CREATE TABLE plain.identity (LIKE public.identity INCLUDING DEFAULTS)")
            cur.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = 'identity' AND indexname NOT LIKE '%pkey'"
            )
            indexes = [
                d.replace(" ON public.identity ", " ON plain.identity ")
                .replace("CREATE INDEX ", "CREATE INDEX plain_")
                .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX plain_")
                for (d,) in cur.fetchall()
            ]
        conn.commit()
        unique = [s for s in indexes if "UNIQUE" in s]
        sql = f"INSERT INTO plain.identity ({', '.join(COLUMNS)}) VALUES %s"
        start = time.perf_counter()
        with conn.cursor() as cur:
            for s in unique:
                cur.execute(s)
            for i in range(0, len(rows), 20_000):
                execute_values(cur, sql, rows[i : i + 20_000], page_size=20_000)
            for s in indexes:
                if s not in unique:
                    cur.execute(s)
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("ANALYZE plain.identity")
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    def plain_lookup(self, codes: Sequence[str]) -> list[float]:
        conn = self._connect()
        conn.autocommit = True
        sql = f"SELECT {', '.join(COLUMNS)} FROM public.identity WHERE resident_code = %s"
        cur = conn.cursor()

        def one(c: str) -> None:
            cur.execute(sql, (c,))
            cur.fetchone()

        out = [_timed(lambda c=c: one(c)) for c in codes]
        conn.close()
        return out

    def size_bytes(self) -> int:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_total_relation_size('public.identity')")
            (size,) = cur.fetchone()
        conn.close()
        return int(size)

    def close(self) -> None:
        admin = self.psycopg2.connect(dbname="postgres", **self.dsn)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        admin.close()


# --- the run --------------------------------------------------------------------------------


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(samples, 0.50), 4),
        "p99_ms": round(_pct(samples, 0.99), 4),
        "mean_ms": round(statistics.fmean(samples), 4),
    }


def search_cases(people: list[IdentityRecord], rng: random.Random, n: int) -> dict[str, Any]:
    current = [r for r in people if r.is_current]
    picks = [rng.choice(current) for _ in range(n)]

    def town(r: IdentityRecord) -> str:
        m = _TOWN.match(r.address)
        return m.group(1) if m else r.address

    combos: dict[str, Callable[[IdentityRecord], dict[str, Any]]] = {
        "氏名+住所": lambda r: {"name": r.name_kanji, "address": town(r)},
        "氏名+生年月日": lambda r: {"name": r.name_kanji, "birth_date": r.birth_date},
        "かな+住所": lambda r: {"name_kana": r.name_kana, "address": town(r)},
        "かな+生年月日": lambda r: {"name_kana": r.name_kana, "birth_date": r.birth_date},
    }
    out: dict[str, Any] = {}
    for label, make in combos.items():
        for with_sex in (False, True):
            key = label + ("+性別" if with_sex else "")
            times, hits, found = [], [], 0
            for r in picks:
                criteria = make(r)
                if with_sex:
                    criteria["sex"] = r.sex
                start = time.perf_counter_ns()
                result = search_4info(**criteria)
                times.append((time.perf_counter_ns() - start) / 1e6)
                hits.append(len(result))
                found += any(x.resident_code == r.resident_code for x in result)
            out[key] = {
                **_summary(times),
                "mean_hits": round(statistics.fmean(hits), 2),
                "max_hits": max(hits),
                "found_self": found / len(picks),
            }
    return out


def run(residents: int, db_url: str | None, lookups: int, searches: int, seed: int) -> dict:
    engine: Engine = PostgresEngine(db_url) if db_url else SqliteEngine()
    rng = random.Random(seed)
    try:
        t0 = time.perf_counter()
        people = [p.record for p in generate("041009", residents, seed=seed)]
        generate_s = time.perf_counter() - t0
        print(f"generated {len(people):,} residents in {generate_s:.1f} s", flush=True)

        db = open_database(engine.store_url())
        init_store(db, "municipal_cs")
        t0 = time.perf_counter()
        loaded = bulk_load_identities(people)
        load_s = time.perf_counter() - t0
        print(f"bulk_load_identities: {loaded / load_s:,.0f} rows/s ({load_s:.1f} s)", flush=True)

        t0 = time.perf_counter()
        rows = [_plain_params(r) for r in people]
        convert_s = time.perf_counter() - t0
        plain_insert_s = engine.plain_load(rows)
        plain_s = convert_s + plain_insert_s
        del rows
        print(f"plain load: {residents / plain_s:,.0f} rows/s ({plain_s:.1f} s)", flush=True)
        size = engine.size_bytes()

        codes = [rng.choice(people).resident_code for _ in range(lookups)]
        for c in codes[:1000]:  # warm both paths' caches the same way
            get_by_resident_code(c)
        ours = [_timed(lambda c=c: get_by_resident_code(c)) for c in codes]
        plain = engine.plain_lookup(codes)
        print(f"lookup p50 {_pct(ours, 0.5):.4f} ms, plain {_pct(plain, 0.5):.4f} ms", flush=True)

        search = search_cases(people, rng, searches)
        db.close()
    finally:
        engine.close()

    lookup = {"ours": _summary(ours), "plain": _summary(plain)}
    result = {
        "residents": residents,
        "generate_s": round(generate_s, 2),
        "load": {
            "ours_s": round(load_s, 2),
            "ours_rows_per_s": round(residents / load_s),
            "plain_s": round(plain_s, 2),
            "plain_convert_s": round(convert_s, 2),
            "plain_rows_per_s": round(residents / plain_s),
            "plain_insert_s": round(plain_insert_s, 2),
            # strict: our whole path (records → rows → database) against the plain insert of
            # rows already converted; the plain conversion is shown beside it
            "ratio": round(plain_insert_s / load_s, 3),
        },
        "db_size_mb": round(size / 2**20, 1),
        "lookup": {
            **lookup,
            "ratio": round(lookup["plain"]["mean_ms"] / lookup["ours"]["mean_ms"], 3),
        },
        "search": search,
    }
    worst_search = max(v["p99_ms"] for v in search.values())
    result["goals"] = {
        "load_ratio": [result["load"]["ratio"], GOALS["load_ratio"]],
        "lookup_ratio": [result["lookup"]["ratio"], GOALS["lookup_ratio"]],
        "lookup_p99_ms": [lookup["ours"]["p99_ms"], GOALS["lookup_p99_ms"]],
        "search_p99_ms": [worst_search, GOALS["search_p99_ms"]],
    }
    result["goals_met"] = {
        "load_ratio": result["load"]["ratio"] >= GOALS["load_ratio"],
        "lookup_ratio": result["lookup"]["ratio"] >= GOALS["lookup_ratio"],
        "lookup_p99_ms": lookup["ours"]["p99_ms"] <= GOALS["lookup_p99_ms"],
        "search_p99_ms": worst_search <= GOALS["search_p99_ms"],
    }
    result["engine"] = engine.name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--residents", type=int, default=1_100_000)
    parser.add_argument("--db", help="postgresql://… URL of a scratch database (created/dropped)")
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=1_000, help="queries per combination")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store.json")
    args = parser.parse_args()
    if args.db and not args.db.startswith(("postgresql://", "postgres://")):
        parser.error("--db must be a postgresql:// URL (SQLite uses a temporary file)")
    result = run(args.residents, args.db, args.lookups, args.searches, args.seed)
    result["meta"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    existing: dict[str, Any] = {}
    if args.out.exists():
        existing = json.loads(args.out.read_text(encoding="utf-8"))
    existing[result["engine"]] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
