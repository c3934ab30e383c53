"""本人確認情報整合 (CS-6) at city scale: 1,100,000 residents, 25 rows spoiled at the prefecture.

The issue's consistency test, run once at full size on an isolated appliance (its own config,
keys, SQLite stores and RabbitMQ names; every node its own process under `juki up`):

1. `juki seed` 仙台市 with N residents (default 1,100,000; the other two cities get a few);
2. spoil 25 rows of 仙台市 at pref.04 directly in its SQLite store — edits of different items,
   a changed 更新順番号, a changed レコード状況, and deletions;
3. time the tree builds alone (CS, prefecture and national stores, in this process);
4. `nodes.consistency.run_check` as 仙台市's CS: time per phase, round trips, bytes (msgpack
   bodies and sealed wire), the full-dump size of the municipality and the ratio; check that it
   found exactly those 25 records with the right kinds and items;
5. `repair=True`, wait for the network to settle, and check again: zero mismatches.

Prints the figures and writes bench/results/consistency.json.

    .venv/bin/python bench/consistency.py                      # 1.1 M (a few minutes)
    .venv/bin/python bench/consistency.py --residents 20000    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodes.consistency import ProgressEvent, run_check  # noqa: E402
from store.db import open_database  # noqa: E402
from store.digest import PROVIDED_KEYS, scan  # noqa: E402
from tests.nodes.appliance import Appliance  # noqa: E402

T = TypeVar("T")
SENDAI = "041009"
PREF = "pref.04"
TABLE = "prefecture_identity"

# what is done to a prefecture row (the expected kind and items are read off the row itself)
SPOILS: list[tuple[str, str]] = [
    ("氏名", "UPDATE {t} SET name_kanji = name_kanji || '改' WHERE resident_code = ?"),
    (
        "ふりがな",
        "UPDATE {t} SET name_kana = name_kana || 'ア', name_kana_seion = name_kana_seion || 'ア' "
        "WHERE resident_code = ?",
    ),
    ("住所", "UPDATE {t} SET address = address || '２' WHERE resident_code = ?"),
    ("生年月日", "UPDATE {t} SET birth_date = date(birth_date, '-1 day') WHERE resident_code = ?"),
    (
        "性別",
        "UPDATE {t} SET sex = CASE sex WHEN '1' THEN '2' ELSE '1' END WHERE resident_code = ?",
    ),
    ("個人番号", "UPDATE {t} SET individual_number = '000000000000' WHERE resident_code = ?"),
    ("更新順番号", "UPDATE {t} SET sequence = sequence - 1 WHERE resident_code = ?"),
    (
        "異動事由+異動年月日",
        "UPDATE {t} SET change_reason = CASE change_reason WHEN '転居' THEN '転入' ELSE '転居' "
        "END, change_date = date(change_date, '+1 day') WHERE resident_code = ?",
    ),
    (
        "レコード状況",
        "UPDATE {t} SET record_status = CASE record_status WHEN '現存' THEN '消除' "
        "ELSE '現存' END WHERE resident_code = ?",
    ),
    ("削除", "DELETE FROM {t} WHERE resident_code = ?"),
]
PLAN = [0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 8, 9, 9, 9, 9, 9, 9, 0, 2, 3, 4, 5, 2, 9, 6]
"""Which spoil each of the 25 rows gets: 7 deletions, 4 changed 更新順番号, the rest edits."""
COLUMNS = ", ".join(PROVIDED_KEYS)


def _phase(name: str, started: float, out: dict[str, float]) -> float:
    now = time.perf_counter()
    out[name] = round(now - started, 3)
    print(f"  {name}: {out[name]:.2f} s", flush=True)
    return now


def _spoil(app: Appliance, rng: random.Random) -> dict[str, tuple[str, str, list[str]]]:
    """Spoil len(PLAN) distinct 仙台市 rows at the prefecture; code → (what, kind, items)."""
    cs_db = app.base / "var" / "db" / f"cs.{SENDAI}.db"
    with sqlite3.connect(f"file:{cs_db}?mode=ro", uri=True) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM identity").fetchone()
        ids = rng.sample(range(1, count + 1), len(PLAN) * 3)
        marks = ",".join("?" * len(ids))
        # not persons removed by 転出: their repair is an ordinary notice (see nodes.consistency)
        rows = conn.execute(
            f"SELECT resident_code, individual_number FROM identity WHERE id IN ({marks}) "
            "AND change_reason <> '転出'",
            ids,
        ).fetchall()
    codes = [c for c, number in rows if number][: len(PLAN)]
    assert len(codes) == len(PLAN), "not enough residents with a 個人番号 to spoil"
    expected = {}
    pref_db = app.base / "var" / "db" / f"{PREF}.db"
    conn = sqlite3.connect(pref_db, timeout=60)
    read = f"SELECT {COLUMNS} FROM {TABLE} WHERE resident_code = ?"
    try:
        with conn:
            for code, which in zip(codes, PLAN, strict=True):
                what, sql = SPOILS[which]
                before = conn.execute(read, (code,)).fetchone()
                assert conn.execute(sql.format(t=TABLE), (code,)).rowcount == 1
                after = conn.execute(read, (code,)).fetchone()
                if after is None:
                    expected[code] = (what, "missing", sorted(PROVIDED_KEYS))
                    continue
                items = [k for k, a, b in zip(PROVIDED_KEYS, before, after, strict=True) if a != b]
                assert items, f"spoil {what} changed nothing"
                expected[code] = (what, "differs", sorted(items))
    finally:
        conn.close()
    return expected


def _heal(app: Appliance) -> int:
    """Put back, from the CS, every 仙台市 row of the prefecture that differs from it (a rerun on
    a kept appliance starts clean). Compared in SQL, independently of store/digest.py."""
    cs_db = app.base / "var" / "db" / f"cs.{SENDAI}.db"
    conn = sqlite3.connect(app.base / "var" / "db" / f"{PREF}.db", timeout=60)
    try:
        conn.execute("ATTACH DATABASE ? AS cs", (f"file:{cs_db}?mode=ro",))
        differing = [
            r[0]
            for r in conn.execute(
                f"SELECT resident_code FROM (SELECT {COLUMNS} FROM cs.identity EXCEPT "
                f"SELECT {COLUMNS} FROM {TABLE} WHERE municipality_code = ?) UNION "
                f"SELECT resident_code FROM (SELECT {COLUMNS} FROM {TABLE} "
                f"WHERE municipality_code = ? EXCEPT SELECT {COLUMNS} FROM cs.identity)",
                (SENDAI, SENDAI),
            )
        ]
        with conn:
            for code in differing:
                conn.execute(f"DELETE FROM {TABLE} WHERE resident_code = ?", (code,))
                conn.execute(
                    f"INSERT INTO {TABLE} ({COLUMNS}) SELECT {COLUMNS} FROM cs.identity "
                    "WHERE resident_code = ?",
                    (code,),
                )
    finally:
        conn.close()
    return len(differing)


def _retrying(what: str, fn: Callable[[], T], retries: list[str]) -> T:
    """Other work on this machine restarts RabbitMQ now and then (crash tests): wait for it and
    run the step again rather than lose a seeded million (each retry is reported)."""
    from broker.errors import BrokerUnavailable, RpcTimeout

    for attempt in range(6):
        try:
            return fn()
        except (BrokerUnavailable, RpcTimeout) as exc:
            if attempt == 5:
                raise
            retries.append(f"{what}: {exc}")
            print(f"  {what}: {exc}; retrying once the broker is back", flush=True)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
                    break
                except OSError:
                    time.sleep(2)
            time.sleep(15)  # let the nodes reconnect
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1_100_000)
    parser.add_argument("--others", type=int, default=200, help="residents of the other cities")
    parser.add_argument("--base", type=Path, help="appliance directory (default: a temp dir)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the appliance (a rerun with --base reuses it)"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/consistency.json")
    args = parser.parse_args()

    base = args.base or Path(tempfile.mkdtemp(prefix="juki-bench-consistency-"))
    base.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    seconds: dict[str, float] = {}
    retries: list[str] = []
    app = Appliance(base)
    print(f"appliance in {base}", flush=True)
    t = time.perf_counter()
    marker = base / "seeded.json"
    if marker.exists() and json.loads(marker.read_text())["residents"] == args.residents:
        print(f"  reusing the seeded appliance; {_heal(app)} rows put back at {PREF}")
    else:
        app.juki("keys", "init")
        app.juki("store", "init", "--all")
        for m in app.config.municipalities:
            n = args.residents if m == SENDAI else args.others
            app.juki("seed", "--municipality", m, "--residents", str(n), "--quiet", timeout=7200)
        marker.write_text(json.dumps({"residents": args.residents}))
    t = _phase("seed", t, seconds)
    try:
        app.start(timeout=120)
        t = _phase("start", t, seconds)
        expected = _spoil(app, rng)
        t = _phase("spoil", t, seconds)

        # tree builds alone, in this process, on each store (what each side pays per check)
        started = time.perf_counter()
        builds: dict[str, float] = {}
        builds_cpu: dict[str, float] = {}  # the machine is shared: CPU time shows the real cost
        dump = 0
        for node, tier in ((f"cs.{SENDAI}", "cs"), (PREF, "prefecture"), ("national", "national")):
            db = open_database(app.config.store_url(node))
            t0, cpu = time.perf_counter(), time.process_time()
            tree, size = scan(tier, SENDAI)
            builds[node] = round(time.perf_counter() - t0, 3)
            builds_cpu[node] = round(time.process_time() - cpu, 3)
            dump = size if tier == "cs" else dump
            print(
                f"  tree {node}: {tree.total:,} records in {builds[node]:.2f} s "
                f"({builds_cpu[node]:.2f} s CPU)",
                flush=True,
            )
            db.close()

        last = [0.0]

        def show(e: ProgressEvent) -> None:
            now = time.perf_counter()
            print(f"  [{e.done:>2}/{e.total}] +{now - last[0]:6.2f}s {e.description}", flush=True)
            last[0] = now

        t = last[0] = time.perf_counter()
        _phase("tree_builds_alone", started, seconds)
        report = _retrying("check", lambda: run_check(app.config, SENDAI, progress=show), retries)
        t = _phase("check", t, seconds)
        found = {m.resident_code: (m.kind, m.fields) for m in report.mismatches}
        wanted = {code: (kind, items) for code, (_, kind, items) in expected.items()}
        exact = found == wanted and all(m.tier == "prefecture" for m in report.mismatches)
        if not exact:
            for code in sorted(set(found) | set(wanted)):
                if found.get(code) != wanted.get(code):
                    print(f"  MISMATCH {code}: found {found.get(code)} wanted {wanted.get(code)}")

        print(f"  found exactly the spoiled rows: {exact}", flush=True)
        repaired = _retrying("repair", lambda: run_check(app.config, SENDAI, repair=True), retries)
        app.quiet(timeout=300)
        t = _phase("repair", t, seconds)
        after = _retrying("check after repair", lambda: run_check(app.config, SENDAI), retries)
        t = _phase("check_after_repair", t, seconds)
    finally:
        app.stop()
        if not args.keep and args.base is None:
            shutil.rmtree(base, ignore_errors=True)

    d = report.to_dict()
    result: dict[str, Any] = {
        "residents": args.residents,
        "spoiled_at_prefecture": len(expected),
        "spoils": sorted({what for what, _, _ in expected.values()}),
        "found": len(report.mismatches),
        "found_exactly_the_spoiled": exact,
        "seconds": seconds,
        "tree_build_seconds": builds,
        "tree_build_cpu_seconds": builds_cpu,
        "load_average": list(os.getloadavg()),
        "check_seconds": report.seconds,
        "peers": d["peers"],
        "round_trips": d["round_trips"],
        "body_bytes": d["body_bytes"],
        "wire_bytes": d["wire_bytes"],
        "full_dump_bytes_per_peer": d["full_dump_bytes"],
        "full_dump_bytes_all_peers": d["full_dump_bytes_all_peers"],
        "ratio_wire_to_full_dump": d["ratio_to_full_dump"],
        "repairs_queued": len(repaired.repairs),
        "retries_after_broker_restarts": retries,
        "mismatches_after_repair": len(after.mismatches),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    assert dump == report.full_dump_bytes
    print(
        json.dumps({k: v for k, v in result.items() if k != "peers"}, indent=2, ensure_ascii=False)
    )
    for p in d["peers"]:
        print(
            f"  {p['node']}: {p['records']:,} records, {p['round_trips']} round trips, "
            f"{p['wire_bytes']:,} wire bytes ({p['body_bytes']:,} body), {p['mismatches']} "
            f"mismatches, {p['seconds']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0 if exact and not after.mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
