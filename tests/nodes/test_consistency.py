"""CS-6 整合性確認 end to end: real RabbitMQ, every node its own process, rows corrupted at the
prefecture and at national behind the application's back → the check names exactly those
records, their tier, kind and items; a repair through the CS's outbox makes the next check clean.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodes.consistency import ConsistencyReport, ProgressEvent, run_check
from store.digest import PROVIDED_KEYS
from tests.nodes.appliance import Appliance, jst_today, wait_until
from tests.nodes.sessions import open_test_session

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

SENDAI = "041009"
ISHINOMAKI = "042021"
OP = {"operator_id": "op-042021-01", "task": "特例転入", "reason": "転入届の受付"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    appliance = Appliance(Path(tmp_path_factory.mktemp("consistency")))
    appliance.prepare(residents=200)
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def _write(app: Appliance, node: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    """Change a node's store directly, as a faulty disk or a careless admin would."""
    db = app.base / "var" / "db" / f"{node}.db"
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            return conn.execute(sql, params).rowcount
    finally:
        conn.close()


def _by_code(report: ConsistencyReport) -> dict[tuple[str, str], tuple[str, list[str]]]:
    return {(m.tier, m.resident_code): (m.kind, m.fields) for m in report.mismatches}


def test_an_untouched_appliance_agrees_even_after_a_move_between_its_cities(app: Appliance) -> None:
    # one 仙台市 resident moves to 石巻市 (same prefecture) with 特例転入: the prefecture's and
    # national's current rows become 石巻市's, and 仙台市's CS keeps its 消除 record
    code = app.rows(
        f"cs.{SENDAI}",
        "SELECT resident_code FROM identity WHERE record_status = '現存' ORDER BY id LIMIT 1",
    )[0][0]
    app.event(SENDAI, "move_out", resident_code=code, to_municipality=ISHINOMAKI)
    wait_until(
        lambda: app.rows(
            f"cs.{ISHINOMAKI}", "SELECT 1 FROM pending_move_out WHERE resident_code = ?", (code,)
        ),
        what="転出証明書情報 at 石巻市",
    )
    clerk = open_test_session(app, f"term.{ISHINOMAKI}.001", OP["operator_id"], tasks=("特例転入",))
    movein = {
        **OP,
        "resident_code": code,
        "new_address": "宮城県石巻市穀町１４番１号",
        "moved_in_on": jst_today(),
    }
    with app.client(f"term.{ISHINOMAKI}.001") as terminal:
        terminal.call(
            f"cs.{ISHINOMAKI}", "cs.op.tokurei_movein", clerk.sign("cs.op.tokurei_movein", movein)
        )
    wait_until(
        lambda: app.rows(
            "national",
            "SELECT 1 FROM national_identity WHERE resident_code = ? AND municipality_code = ?",
            (code, ISHINOMAKI),
        ),
        what="転入 at national",
    )
    app.quiet()

    events: list[ProgressEvent] = []
    report = run_check(app.config, SENDAI, progress=events.append)
    assert report.mismatches == [], report.to_dict()["mismatches"]
    assert report.cs_records == 200
    assert [p.records for p in report.peers] == [200, 200]
    assert [p.round_trips for p in report.peers] == [1, 1]  # equal roots: one question each
    assert events[-1].done == events[-1].total
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert run_check(app.config, ISHINOMAKI).mismatches == []


def test_corrupted_and_deleted_rows_are_named_then_repaired(app: Appliance) -> None:
    codes = [
        r[0]
        for r in app.rows(
            f"cs.{SENDAI}",
            "SELECT resident_code FROM identity WHERE change_reason <> '転出' "
            "AND individual_number IS NOT NULL ORDER BY resident_code",
        )
    ]
    pick = codes[3::23][:8]
    assert len(pick) == 8
    pref, nat = "pref.04", "national"
    edits = [
        (
            pref,
            pick[0],
            "UPDATE prefecture_identity SET name_kanji = '改ざん' WHERE resident_code = ?",
        ),
        (
            pref,
            pick[1],
            "UPDATE prefecture_identity SET address = address || '２', "
            "individual_number = '000000000000' WHERE resident_code = ?",
        ),
        (
            pref,
            pick[2],
            "UPDATE prefecture_identity SET sequence = sequence + 5 WHERE resident_code = ?",
        ),
        (pref, pick[3], "DELETE FROM prefecture_identity WHERE resident_code = ?"),
        (
            nat,
            pick[4],
            "UPDATE national_identity SET birth_date = '1900-01-01' WHERE resident_code = ?",
        ),
        (
            nat,
            pick[5],
            "UPDATE national_identity SET record_status = '消除' WHERE resident_code = ?",
        ),
        (nat, pick[6], "DELETE FROM national_identity WHERE resident_code = ?"),
        # the same person wrong at both tiers, differently
        (pref, pick[7], "UPDATE prefecture_identity SET sex = '9' WHERE resident_code = ?"),
        (nat, pick[7], "DELETE FROM national_identity WHERE resident_code = ?"),
    ]
    for node, code, sql in edits:
        assert _write(app, node, sql, (code,)) == 1
    extra = "99999999999"
    _write(
        app,
        nat,
        "INSERT INTO national_identity (resident_code, name_kanji, name_kana, name_kana_seion, "
        "birth_date, sex, address, individual_number, change_reason, change_date, "
        "municipality_code, record_status, sequence, old_resident_code) "
        "SELECT ?, name_kanji, name_kana, name_kana_seion, birth_date, sex, address, NULL, "
        "change_reason, change_date, municipality_code, record_status, sequence, NULL "
        "FROM national_identity WHERE resident_code = ?",
        (extra, pick[0]),
    )

    report = run_check(app.config, SENDAI)
    everything = sorted(PROVIDED_KEYS)
    assert _by_code(report) == {
        ("prefecture", pick[0]): ("differs", ["name_kanji"]),
        ("prefecture", pick[1]): ("differs", ["address", "individual_number"]),
        ("prefecture", pick[2]): ("differs", ["sequence"]),
        ("prefecture", pick[3]): ("missing", everything),
        ("national", pick[4]): ("differs", ["birth_date"]),
        ("national", pick[5]): ("differs", ["record_status"]),
        ("national", pick[6]): ("missing", everything),
        ("prefecture", pick[7]): ("differs", ["sex"]),
        ("national", pick[7]): ("missing", everything),
        ("national", extra): ("extra", everything),
    }
    assert len(report.mismatches) == 10
    assert {m.node for m in report.mismatches} == {"pref.04", "national"}
    stale = next(m for m in report.mismatches if m.resident_code == pick[2])
    assert stale.tier_sequence == stale.cs_sequence + 5  # type: ignore[operator]
    text = report.describe()
    assert all(code in text for code in [*pick, extra]) and "10 mismatches" in text
    d = report.to_dict()
    assert d["full_dump_bytes"] > 0 and d["wire_bytes"] > 0 and d["round_trips"] >= 2 * 6
    assert d["body_bytes"] < d["wire_bytes"]

    repaired = run_check(app.config, SENDAI, repair=True)
    assert sorted(r.resident_code for r in repaired.repairs) == sorted(pick)
    assert {r.mode for r in repaired.repairs} == {"repair"}
    assert app.rows(
        f"cs.{SENDAI}",
        f"SELECT COUNT(*) FROM outbox WHERE msg_id IN ({','.join('?' * len(pick))})",
        tuple(r.msg_id for r in repaired.repairs),
    ) == [(len(pick),)]
    app.quiet()

    # the repairs were relayed and applied: only the record national alone holds is left
    after = run_check(app.config, SENDAI)
    assert _by_code(after) == {("national", extra): ("extra", everything)}
    assert app.rows(
        "pref.04", "SELECT name_kanji FROM prefecture_identity WHERE resident_code = ?", (pick[0],)
    ) == app.rows(
        f"cs.{SENDAI}", "SELECT name_kanji FROM identity WHERE resident_code = ?", (pick[0],)
    )
    _write(app, nat, "DELETE FROM national_identity WHERE resident_code = ?", (extra,))
    assert run_check(app.config, SENDAI).mismatches == []
