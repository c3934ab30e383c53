"""Counter-task pieces without the network: the proposal checks (what a 職権修正 may change, and
exactly what CS-1 would refuse), the one-decision rule of store/corrections, the registry's
correction update (accepted by the CS's own validation), the 送付先 day counts (JST days, purge
rows) and the consistency summary. One SQLite file per test (our own store, no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.service import HandlerError
from nodes.cs_tasks import CORRECTABLE, checked_correction, summarize
from nodes.registry_tasks import correction_update
from nodes.stores import load_role_module
from store import corrections
from store.auditlog import ProvisionLogRow, append_usage
from store.corrections import CorrectionError, CorrectionStatus
from store.db import open_database
from store.journal import Inbox, Refusal
from store.records import ChangeReason, IdentityRecord, record_to_dict
from store.retention import PURGE_TASK, PURGE_USER
from store.schema import init_store
from store.validation import validate_update
from tests.factories import resident as make_resident

T0 = datetime(2025, 4, 1, 1, 0, tzinfo=UTC)  # Tuesday 10:00 JST


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    database = open_database(f"sqlite:///{tmp_path / 'cs.db'}")
    load_role_module("municipal_cs")
    init_store(database, "municipal_cs")
    yield database
    database.close()


def resident(**changes: Any) -> IdentityRecord:
    base = make_resident(
        seed=3,
        sequence=5,
        timestamp=T0 - timedelta(days=30),
    )
    return replace(base, **changes)


# --------------------------------------------------------------------------------------------
# proposal checks


def test_correctable_items_are_the_correction_rule_minus_metadata() -> None:
    assert "name_kana" in CORRECTABLE and "address" in CORRECTABLE
    for never in ("individual_number", "old_resident_code", "municipality_code", "notified_on"):
        assert never not in CORRECTABLE


def test_checked_correction_normalises_and_refuses_what_cs1_would(db: Any) -> None:
    person = resident()
    assert checked_correction(person, {"name_kana": "アオバ\u3000ハナ"}, T0) == {
        "name_kana": "アオバ\u3000ハナ"
    }

    def code(changes: dict[str, Any]) -> str:
        with pytest.raises(HandlerError) as info:
            checked_correction(person, changes, T0)
        return info.value.code

    assert code({"individual_number": "123456789018"}) == "not_correctable"
    assert code({"birth_date": "1990-02-30"}) == "V-1"
    assert code({}) == "empty"
    assert code({"name_kana": person.name_kana}).startswith("V-")  # nothing would change
    assert code({"sex": "7"}) == "V-1"
    frozen = replace(person, update_prohibited=True)
    with pytest.raises(HandlerError) as info:
        checked_correction(frozen, {"name_kana": "アオバ\u3000ハナ"}, T0)
    assert info.value.code == "V-13"


def test_registry_correction_update_passes_the_cs_checks() -> None:
    person = resident()
    register_entry = {k: v for k, v in record_to_dict(person).items() if v is not None}
    after, update = correction_update(
        register_entry, {"name_kana": "アオバ\u3000ハナ"}, "ふりがな誤記", "2025-04-01", 6, "041009"
    )
    assert after["name_kana"] == "アオバ\u3000ハナ" and after["name_kanji"] == person.name_kanji
    checked, violations = validate_update(update, person)
    assert violations == [] and checked is not None
    assert checked.change_reason is ChangeReason.CORRECTION_BY_AUTHORITY
    assert checked.changes["name_kana"] == "アオバ\u3000ハナ"
    assert update["change_reason_detail"] == "ふりがな誤記"


# --------------------------------------------------------------------------------------------
# store/corrections


def test_a_proposal_is_decided_once_and_kept(db: Any) -> None:
    with db.atomic():
        p = corrections.propose(
            "12345678903",
            {"name_kana": "ア"},
            {"name_kana": "イ"},
            "訂正",
            proposer_id="a",
            proposer_terminal="t1",
            now=T0,
        )
    assert p.status is CorrectionStatus.PENDING
    assert not any(ch.isdigit() for ch in p.proposal_id[9:])  # no 12-digit runs in log targets
    with db.atomic():
        done = corrections.decide(
            p.proposal_id,
            CorrectionStatus.REJECTED,
            decided_by="b",
            decided_terminal="t2",
            note=None,
            now=T0 + timedelta(minutes=5),
        )
    assert (done.status, done.decided_by, done.decided_at) == (
        CorrectionStatus.REJECTED,
        "b",
        T0 + timedelta(minutes=5),
    )
    with pytest.raises(CorrectionError) as info:
        corrections.decide(
            p.proposal_id,
            CorrectionStatus.APPROVED,
            decided_by="c",
            decided_terminal="t3",
            note=None,
            now=T0,
        )
    assert info.value.code == "decided"
    assert corrections.get_proposal(p.proposal_id) == done
    with pytest.raises(CorrectionError) as info:
        corrections.decide(
            "CNOSUCH",
            CorrectionStatus.APPROVED,
            decided_by="c",
            decided_terminal="t",
            note="",
            now=T0,
        )
    assert info.value.code == "unknown"
    assert [
        x.proposal_id for x in corrections.list_proposals(status=CorrectionStatus.PENDING)
    ] == []


# --------------------------------------------------------------------------------------------
# 送付先 counts


def test_destination_counts_fall_on_jst_days(db: Any) -> None:
    late = datetime(2025, 4, 1, 14, 59, tzinfo=UTC)  # 23:59 JST on the 1st
    early = datetime(2025, 4, 1, 15, 1, tzinfo=UTC)  # 00:01 JST on the 2nd
    with db.atomic():
        Inbox.create(msg_id="m1", sender="r", type="dest", received_at=late.timestamp())
        Inbox.create(msg_id="m2", sender="r", type="dest", received_at=early.timestamp())
        Inbox.create(msg_id="m3", sender="k", type="ack", received_at=early.timestamp())
        Inbox.create(msg_id="m4", sender="r", type="other", received_at=early.timestamp())
        Refusal.create(
            msg_id="m5", sender="r", type="dest", reason="CS-7", detail="", at=late.timestamp()
        )
        ProvisionLogRow.create(
            at=late,
            operator_id="r",
            terminal_id="r",
            recipient="k",
            message_type="fwd",
            legal_basis="x",
            target="12345678903",
            result="provided",
            reason="",
            msg_id="m1",
        )
        append_usage(
            at=early,
            user_id=PURGE_USER,
            terminal_id="",
            task=PURGE_TASK,
            reason="送付先情報",
            target="destination: 3 rows due before 2025-04-01T15:00:00+00:00",
        )
        append_usage(
            at=early,
            user_id=PURGE_USER,
            terminal_id="",
            task=PURGE_TASK,
            reason="other",
            target="pending_move_out: 9 rows due before 2025-04-01T15:00:00+00:00",
        )
    counts = corrections.destination_counts(
        since=T0 - timedelta(days=1), notice_type="dest", forward_type="fwd", ack_type="ack"
    )
    assert counts.days == [
        {
            "day": "2025-04-01",
            "received": 2,
            "refused": 1,
            "forwarded": 1,
            "acknowledged": 0,
            "purged": 0,
        },
        {
            "day": "2025-04-02",
            "received": 1,
            "refused": 0,
            "forwarded": 0,
            "acknowledged": 1,
            "purged": 3,
        },
    ]
    assert (counts.awaiting_ack, counts.awaiting_purge, counts.oldest_sent_at) == (0, 0, None)
    later = corrections.destination_counts(
        since=early, notice_type="dest", forward_type="fwd", ack_type="ack"
    )
    assert [d["day"] for d in later.days] == ["2025-04-02"]


# --------------------------------------------------------------------------------------------
# consistency summary


def test_summary_keeps_verdict_cost_and_first_mismatches() -> None:
    report = {
        "ok": False,
        "cs_records": 10,
        "round_trips": 7,
        "wire_bytes": 1234,
        "full_dump_bytes_all_peers": 99999,
        "peers": [{"node": "pref.04", "tier": "prefecture", "records": 10, "mismatches": 1}],
        "mismatches": [
            {
                "resident_code": f"{i:011d}",
                "tier": "prefecture",
                "node": "pref.04",
                "kind": "differs",
                "fields": ["name_kanji"],
                "cs_sequence": 1,
            }
            for i in range(1200)
        ],
        "repairs": [{"resident_code": "00000000001"}],
        "seconds": {"total": 0.1},
    }
    s = summarize(report, "text")
    assert (s["ok"], s["cs_records"], s["mismatch_count"], len(s["mismatches"])) == (
        False,
        10,
        1200,
        1000,
    )
    assert s["repairs"] == 1 and s["full_dump_bytes"] == 99999
    assert s["peers"][0]["round_trips"] == 0  # absent in the report → 0, not an error
    from nodes.messages_tasks import SUMMARY

    SUMMARY.validate(s, "summary")  # what the CS replies fits the wire schema
