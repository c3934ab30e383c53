"""Counter tasks at the CS end to end (issue 6): V-12 corrections with a second operator, 送付先
counts and 整合性確認 from the terminal — real node processes on RabbitMQ, operators logged in
with card + biometric (tests/nodes/sessions.py), answers and stores checked from outside."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.errors import RemoteError
from nodes.stores import purge_node
from store.records import ChangeReason
from tests.nodes.appliance import Appliance, running_appliance, wait_until
from tests.nodes.sessions import TestSession, open_test_session

pytestmark = [pytest.mark.rabbitmq]

MUNI, CS, REGISTRY, PREF = "041009", "cs.041009", "registry.041009", "pref.04"
TERM1, TERM2 = "term.041009.001", "term.041009.002"
KEEP = {"national", "cardmgmt", PREF, CS, REGISTRY, TERM1, TERM2}
PROPOSE = {"task": "本人確認情報訂正", "reason": "ふりがな誤記の申出"}
CONFIRM = {"task": "本人確認情報管理責任者", "reason": "訂正内容の確認"}
CORRECTION = ChangeReason.CORRECTION_BY_AUTHORITY.value


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """仙台市's CS and registry, the prefecture, national and 機構; six residents."""
    base = Path(tmp_path_factory.mktemp("tasks"))
    with running_appliance(base, residents=6, only=KEEP) as running:
        yield running


@pytest.fixture(scope="module")
def proposer(app: Appliance) -> TestSession:
    """Holds both the entering and the approving task: V-12 must still refuse them."""
    return open_test_session(
        app, TERM1, "op-proposer", tasks=("本人確認情報訂正", "本人確認情報管理責任者")
    )


@pytest.fixture(scope="module")
def manager(app: Appliance) -> TestSession:
    """本人確認情報管理責任者 on another terminal."""
    return open_test_session(app, TERM2, "op-manager", tasks=("本人確認情報管理責任者",))


def residents(app: Appliance) -> list[str]:
    return [r[0] for r in app.rows(CS, "SELECT resident_code FROM identity ORDER BY 1")]


def kana_everywhere(app: Appliance, code: str) -> tuple[Any, ...]:
    """(CS kana, CS 異動事由, prefecture kana, national kana)."""
    cs = app.rows(
        CS, "SELECT name_kana, change_reason FROM identity WHERE resident_code=?", (code,)
    )
    pref = app.rows(
        PREF, "SELECT name_kana FROM prefecture_identity WHERE resident_code=?", (code,)
    )
    nat = app.rows(
        "national", "SELECT name_kana FROM national_identity WHERE resident_code=?", (code,)
    )
    return (cs[0][0], cs[0][1], pref[0][0], nat[0][0])


def other_kana(kana: str) -> str:
    """A different, still valid ふりがな (the space between surname and given name moved)."""
    return kana.replace("\u3000", "") if "\u3000" in kana else kana[:2] + "\u3000" + kana[2:]


def usage(app: Appliance, message_type: str) -> list[tuple[Any, ...]]:
    return app.rows(
        CS,
        "SELECT user_id, terminal_id, task, reason, target, outcome FROM usage_log "
        "WHERE message_type = ? ORDER BY seq",
        (message_type,),
    )


def refused(call: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        call()
    return info.value


def correction_notices(app: Appliance) -> int:
    rows = app.rows(CS, "SELECT count(*) FROM outbox WHERE type = 'registry.cs.correction'")
    return int(rows[0][0])


# --------------------------------------------------------------------------------------------
# V-12


def test_correction_is_confirmed_by_another_operator_and_travels_through_the_registry(
    app: Appliance, proposer: TestSession, manager: TestSession
) -> None:
    code = residents(app)[0]
    before = kana_everywhere(app, code)
    new_kana = other_kana(before[0])
    sent_before = correction_notices(app)

    proposal = proposer.call(
        "cs.op.correction.propose",
        {"resident_code": code, "changes": {"name_kana": new_kana}, "note": "ふりがな誤記"},
        **PROPOSE,
    )["proposal"]
    assert proposal["status"] == "pending"
    assert (proposal["changes"], proposal["before"]) == (
        {"name_kana": new_kana},
        {"name_kana": before[0]},
    )
    assert (proposal["proposer_id"], proposal["proposer_terminal"]) == ("op-proposer", TERM1)
    pid = proposal["proposal_id"]

    # the proposer holds the approving task, and is still refused: four eyes, not permissions
    for verb in ("approve", "reject"):
        exc = refused(
            lambda v=verb: proposer.call(f"cs.op.correction.{v}", {"proposal_id": pid}, **CONFIRM)
        )
        assert exc.code == "V-12"
    # an operator without the 管理責任者's task cannot approve either
    clerk = open_test_session(app, TERM2, "op-entry-only", tasks=("本人確認情報訂正",))
    exc = refused(lambda: clerk.call("cs.op.correction.approve", {"proposal_id": pid}, **CONFIRM))
    assert exc.code == "forbidden"
    assert correction_notices(app) == sent_before
    assert kana_everywhere(app, code) == before

    approved = manager.call(
        "cs.op.correction.approve", {"proposal_id": pid, "note": "申出書と照合済み"}, **CONFIRM
    )["proposal"]
    assert approved["status"] == "approved"
    assert (approved["decided_by"], approved["decided_terminal"]) == ("op-manager", TERM2)
    assert approved["decided_at"] >= approved["proposed_at"]

    # registry → CS-1 職権修正 → prefecture → national
    after = wait_until(
        lambda: (k := kana_everywhere(app, code)) and k[2] == new_kana and k[3] == new_kana and k,
        30,
        "the 職権修正 at CS, prefecture and national",
    )
    assert after == (new_kana, CORRECTION, new_kana, new_kana)
    registry_copy = app.control(REGISTRY, "registry.status")  # the registry changed first
    assert not [r for r in registry_copy["refusals"] if r.get("resident_code") == code]

    listed = manager.call("cs.op.correction.list", {"resident_code": code}, **CONFIRM)
    [row] = [p for p in listed["proposals"] if p["proposal_id"] == pid]
    assert row["status"] == "approved" and row["applied"] is True

    # decided once: a second approval is refused
    exc = refused(lambda: manager.call("cs.op.correction.approve", {"proposal_id": pid}, **CONFIRM))
    assert exc.code == "decided"

    # both operators' requests, the refusals too, in the usage log with terminal, 事務種別, 処理事由
    proposed = [r for r in usage(app, "cs.op.correction.propose") if pid in r[4]]
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in proposed] == [
        ("op-proposer", TERM1, PROPOSE["task"], PROPOSE["reason"], "ok")
    ]
    decided = [
        (r[0], r[1], r[2], r[3], r[5])
        for r in usage(app, "cs.op.correction.approve")
        if pid in r[4]
    ]
    assert decided == [
        ("op-proposer", TERM1, CONFIRM["task"], CONFIRM["reason"], "refused:V-12"),
        ("op-manager", TERM2, CONFIRM["task"], CONFIRM["reason"], "ok"),
        ("op-manager", TERM2, CONFIRM["task"], CONFIRM["reason"], "refused:decided"),
    ]
    forbidden = usage(app, "cs.op.correction.approve")
    assert ("op-entry-only", TERM2, "refused:forbidden") in {(r[0], r[1], r[5]) for r in forbidden}
    # the proposal row is kept with proposer, approver, times and outcome
    kept = app.rows(
        CS,
        "SELECT proposer_id, decided_by, status, proposed_at, decided_at "
        "FROM correction_proposal WHERE proposal_id = ?",
        (pid,),
    )
    assert kept[0][:3] == ("op-proposer", "op-manager", "approved")
    assert kept[0][4] >= kept[0][3]


def test_rejected_correction_changes_nothing(
    app: Appliance, proposer: TestSession, manager: TestSession
) -> None:
    code = residents(app)[1]
    before = kana_everywhere(app, code)
    sent_before = correction_notices(app)
    pid = proposer.call(
        "cs.op.correction.propose",
        {"resident_code": code, "changes": {"name_kana": other_kana(before[0])}, "note": "誤申出"},
        **PROPOSE,
    )["proposal"]["proposal_id"]
    rejected = manager.call(
        "cs.op.correction.reject", {"proposal_id": pid, "note": "根拠書類なし"}, **CONFIRM
    )["proposal"]
    assert (rejected["status"], rejected["decided_by"], rejected["applied"]) == (
        "rejected",
        "op-manager",
        False,
    )
    app.quiet()
    assert correction_notices(app) == sent_before
    assert kana_everywhere(app, code) == before
    exc = refused(lambda: manager.call("cs.op.correction.approve", {"proposal_id": pid}, **CONFIRM))
    assert exc.code == "decided"
    pending = manager.call("cs.op.correction.list", {"status": "pending"}, **CONFIRM)["proposals"]
    assert pid not in {p["proposal_id"] for p in pending}


def test_proposal_is_checked_like_the_update_it_will_become(
    app: Appliance, proposer: TestSession
) -> None:
    code = residents(app)[2]

    def propose(changes: dict[str, Any]) -> RemoteError:
        body = {"resident_code": code, "changes": changes, "note": "試験"}
        return refused(lambda: proposer.call("cs.op.correction.propose", body, **PROPOSE))

    assert propose({"individual_number": "123456789018"}).code == "not_correctable"
    assert propose({"municipality_code": "042021"}).code == "not_correctable"
    assert propose({"birth_date": "2020-13-01"}).code == "V-1"
    assert propose({}).code == "empty"
    current = proposer.call("cs.op.lookup", {"resident_code": code}, **PROPOSE)["record"]
    assert propose({"name_kana": current["name_kana"]}).code.startswith("V-")  # nothing changes
    missing = refused(
        lambda: proposer.call(
            "cs.op.correction.propose",
            {"resident_code": "00000000000", "changes": {"sex": "1"}, "note": "x"},
            **PROPOSE,
        )
    )
    assert missing.code == "not_found"
    assert app.rows(
        CS, "SELECT count(*) FROM correction_proposal WHERE resident_code = ?", (code,)
    )[0] == (0,)


# --------------------------------------------------------------------------------------------
# T-07 送付先情報通知


def test_destination_counts_follow_one_record_and_name_nobody(app: Appliance) -> None:
    clerk = open_test_session(app, TERM1, "op-dest", tasks=("送付先情報通知",))
    ask = {"task": "送付先情報通知", "reason": "日次確認"}

    def totals() -> dict[str, int]:
        answer = clerk.call("cs.op.destinations", {}, **ask)
        sums = {k: sum(d[k] for d in answer["days"]) for k in ("received", "refused")}
        sums.update({k: sum(d[k] for d in answer["days"]) for k in ("forwarded", "acknowledged")})
        sums.update(awaiting_ack=answer["awaiting_ack"], awaiting_purge=answer["awaiting_purge"])
        return sums

    start = totals()
    code = app.event(MUNI, "birth")["resident_code"]
    wait_until(lambda: app.rows(CS, "SELECT 1 FROM identity WHERE resident_code=?", (code,)), 30)
    app.event(MUNI, "number_request", resident_code=code)  # → 個人番号指定 → 送付先 (CS-7)
    wait_until(
        lambda: app.rows(
            CS,
            "SELECT 1 FROM destination WHERE resident_code=? AND sent_at IS NOT NULL",
            (code,),
        ),
        30,
        "機構's acknowledgement of the 送付先",
    )
    # a 送付先 record the CS-7 checks refuse (a bare map): counted, never forwarded
    with app.client(REGISTRY) as registry:
        registry.notify(CS, "cs.registry.destination", {"record": {"destination_id": "BAD-1"}})
    wait_until(
        lambda: app.rows(CS, "SELECT 1 FROM refusal WHERE type = 'cs.registry.destination'"), 30
    )
    answer = clerk.call("cs.op.destinations", {}, **ask)
    end = totals()
    assert end["received"] - start["received"] == 2
    assert end["refused"] - start["refused"] == 1
    assert end["forwarded"] - start["forwarded"] == 1
    assert end["acknowledged"] - start["acknowledged"] == 1
    assert end["awaiting_purge"] - start["awaiting_purge"] == 1
    assert answer["next_purge_due"] is not None
    assert code not in repr(answer)  # counts only (§4.10)

    # the purge job deletes acknowledged records a business day later; the count remembers them
    waiting = end["awaiting_purge"]
    purge_node(app.config, CS, now=datetime(2100, 1, 5, tzinfo=UTC))
    later = clerk.call("cs.op.destinations", {"since": "2000-01-01"}, **ask)
    assert later["awaiting_purge"] == 0
    assert sum(d["purged"] for d in later["days"]) == waiting
    usage_rows = [r for r in usage(app, "cs.op.destinations") if r[0] == "op-dest"]
    assert {(r[1], r[2], r[3], r[5]) for r in usage_rows} == {(TERM1, *ask.values(), "ok")}


# --------------------------------------------------------------------------------------------
# T-08 整合性確認


def test_consistency_check_from_the_terminal_finds_and_resends(app: Appliance) -> None:
    op = open_test_session(app, TERM1, "op-check", tasks=("整合性確認",))
    ask = {"task": "整合性確認", "reason": "年次の整合性確認"}
    app.quiet()

    def run(repair: bool = False) -> dict[str, Any]:
        started = op.call("cs.op.consistency.start", {"repair": repair}, **ask)
        assert started["state"] == "running" and started["repair"] is repair
        busy = refused(lambda: op.call("cs.op.consistency.start", {}, **ask))
        assert busy.code == "busy"
        done = wait_until(
            lambda: (
                (s := op.call("cs.op.consistency.status", {}, **ask))["run"]["state"] != "running"
                and s
            ),
            120,
            "the 整合性確認 to finish",
        )
        assert done["running"] is False
        result = done["run"]
        assert result["run_id"] == started["run_id"] and result["state"] == "done", result
        assert result["done"] == result["total"] > 0
        return dict(result["report"])

    clean = run()
    on_file = app.rows(CS, "SELECT count(*) FROM identity")[0][0]
    assert clean["ok"] is True and clean["mismatch_count"] == 0
    assert clean["cs_records"] == on_file
    assert [p["tier"] for p in clean["peers"]] == ["prefecture", "national"]

    # spoil the prefecture's copy of one person behind the nodes' backs
    code = residents(app)[3]
    db = app.base / "var" / "db" / f"{PREF}.db"
    with sqlite3.connect(db, timeout=10) as conn:
        conn.execute(
            "UPDATE prefecture_identity SET name_kanji = '改竄　太郎' WHERE resident_code = ?",
            (code,),
        )
    found = run()
    assert found["ok"] is False
    assert [(m["resident_code"], m["tier"], m["kind"]) for m in found["mismatches"]] == [
        (code, "prefecture", "differs")
    ]
    assert "name_kanji" in found["mismatches"][0]["fields"]
    assert found["repairs"] == 0

    resent = run(repair=True)
    assert resent["repairs"] == 1
    wait_until(
        lambda: app.rows(
            PREF,
            "SELECT 1 FROM prefecture_identity WHERE resident_code=? AND name_kanji != ?",
            (code, "改竄　太郎"),
        ),
        30,
        "the re-sent record at the prefecture",
    )
    assert run()["ok"] is True

    starts = [r for r in usage(app, "cs.op.consistency.start") if r[0] == "op-check"]
    ok_starts = [r for r in starts if "開始" in r[4]]
    ends = [r for r in starts if "終了" in r[4]]
    assert len(ok_starts) == len(ends) == 4
    assert {(r[1], r[2], r[3]) for r in ok_starts + ends} == {(TERM1, *ask.values())}
    assert [r[5] for r in starts if r[5] != "ok"] == ["refused:busy"] * 4
