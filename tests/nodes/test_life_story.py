"""End to end through the real RabbitMQ, every node its own process: one resident's life.

birth → 個人番号 assigned → 転居 within 仙台市 → 転出 to 千代田区 with 特例転入 → 死亡, and the
records and history rows left at every tier of both prefectures.
"""

from __future__ import annotations

import pytest

from tests.nodes.appliance import Appliance, jst_today, wait_until
from tests.nodes.sessions import open_test_session

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

OP = {"task": "特例転入", "reason": "転入届の受付"}
FIELDS = (
    "resident_code, name_kanji, birth_date, sex, address, individual_number, change_reason, "
    "change_date, municipality_code, record_status, sequence"
)


def _current(app: Appliance, node: str, table: str, code: str) -> tuple | None:
    rows = app.rows(node, f"SELECT {FIELDS} FROM {table} WHERE resident_code = ?", (code,))
    return rows[0] if rows else None


def _reasons(app: Appliance, node: str, table: str, code: str) -> list[tuple]:
    return app.rows(
        node,
        f"SELECT change_reason, municipality_code, sequence FROM {table} "
        "WHERE resident_code = ? ORDER BY history_no",
        (code,),
    )


def test_birth_number_move_within_move_out_tokurei_movein_and_death(appliance: Appliance) -> None:
    app = appliance
    code = app.event("041009", "birth")["resident_code"]
    wait_until(
        lambda: _current(app, "national", "national_identity", code), what="birth at national"
    )

    app.event("041009", "number_request", resident_code=code)
    number = wait_until(
        lambda: (_current(app, "national", "national_identity", code) or (None,) * 6)[5],
        what="個人番号 assigned at national",
    )
    assert len(number) == 12

    app.event("041009", "move_within", resident_code=code)
    app.event("041009", "move_out", resident_code=code, to_municipality="131016")
    pending = wait_until(
        lambda: app.rows(
            "cs.131016", "SELECT status FROM pending_move_out WHERE resident_code = ?", (code,)
        ),
        what="転出証明書情報 held at 千代田区's CS",
    )
    assert pending == [("pending",)]

    clerk = open_test_session(app, "term.131016.001", "op-131016-01", tasks=("特例転入",))
    with app.client("term.131016.001") as terminal:
        listed = terminal.call(
            "cs.131016", "cs.op.pending_moveouts", clerk.sign("cs.op.pending_moveouts", OP)
        )["pending"]
        assert code in [p["resident_code"] for p in listed]
        movein = {
            **OP,
            "resident_code": code,
            "new_address": "東京都千代田区麹町三丁目3番3号",
            "moved_in_on": jst_today(),
        }
        terminal.call(
            "cs.131016", "cs.op.tokurei_movein", clerk.sign("cs.op.tokurei_movein", movein)
        )
    wait_until(
        lambda: (_current(app, "national", "national_identity", code) or ("",) * 9)[8] == "131016",
        what="転入 at national",
    )
    # the 転入通知 went back to 仙台市's registry
    wait_until(
        lambda: app.control("registry.041009", "registry.status")["moved_out"] >= 1, what="転入通知"
    )
    app.event("131016", "death", resident_code=code)
    wait_until(
        lambda: (_current(app, "national", "national_identity", code) or ("",) * 7)[6] == "死亡",
        what="死亡 at national",
    )
    app.quiet()

    # identical records at the CS, prefecture and national of the new municipality's prefecture
    cs = _current(app, "cs.131016", "identity", code)
    assert cs is not None
    assert _current(app, "pref.13", "prefecture_identity", code) == cs
    assert _current(app, "national", "national_identity", code) == cs
    assert cs[5] == number and cs[9] == "消除" and cs[6] == "死亡"
    # the old municipality keeps the removed record (消除者), the same at its prefecture
    old = _current(app, "cs.041009", "identity", code)
    assert old is not None and old[6] == "転出" and old[9] == "消除"
    assert _current(app, "pref.04", "prefecture_identity", code) == old
    assert app.rows(
        "cs.131016", "SELECT status FROM pending_move_out WHERE resident_code = ?", (code,)
    ) == [("matched",)]

    # history: every change, in order, at every tier that saw it
    sendai = [
        ("出生", "041009", 1),
        ("個人番号指定", "041009"),
        ("転居", "041009"),
        ("転出", "041009"),
    ]
    chiyoda = [("転入", "131016"), ("死亡", "131016")]
    national = _reasons(app, "national", "national_identity_history", code)
    assert [r[:2] for r in national] == [s[:2] for s in sendai + chiyoda]
    assert [r[:2] for r in _reasons(app, "cs.041009", "identity_history", code)] == [
        s[:2] for s in sendai
    ]
    assert [r[:2] for r in _reasons(app, "pref.04", "prefecture_identity_history", code)] == [
        s[:2] for s in sendai
    ]
    assert [r[:2] for r in _reasons(app, "cs.131016", "identity_history", code)] == [
        s[:2] for s in chiyoda
    ]
    assert [r[:2] for r in _reasons(app, "pref.13", "prefecture_identity_history", code)] == [
        s[:2] for s in chiyoda
    ]
    seqs = [r[2] for r in national[:4]]
    assert (
        seqs == sorted(seqs) and len(set(seqs)) == 4
    )  # 更新順番号 strictly increasing per municipality


def test_every_node_checkpoints_its_wal_off_the_commit_path(appliance: Appliance) -> None:
    """Each node copies its WAL into the database file on a thread of its own, about once a
    second (store.db.checkpoint_wal); `juki ctl health NODE` shows where that stands."""
    appliance.event("041009", "correction", resident_code=_any_resident(appliance))
    for node in ("registry.041009", "cs.041009", "pref.04", "national"):
        wal = wait_until(
            lambda n=node: (
                (w := appliance.health(n).get("wal"))
                and w["pages"] > 0
                and w["checkpointed"] == w["pages"]
                and w
            ),
            20,
            f"{node} checkpoints its WAL",
        )
        assert wal["busy"] == 0


def _any_resident(app: Appliance) -> str:
    rows = app.rows(
        "registry.041009",
        "SELECT resident_code FROM register_person WHERE status = 'current' LIMIT 1",
    )
    return str(rows[0][0])
