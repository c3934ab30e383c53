"""使用履歴・提供記録: the hash-chained usage log detects tampering; provision records and queries.

Every test runs on SQLite and on the real PostgreSQL (the `db` fixture). Tampering is done the
way an intruder with SQL access would do it: UPDATE / DELETE / INSERT on the tables, bypassing
append_usage.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import peewee
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import auditlog
from store.auditlog import (
    GENESIS_HASH,
    AuditLogError,
    ChainProblem,
    ProvisionLogRow,
    UsageChainHeadRow,
    UsageLogRow,
    append_usage,
    provision_entries,
    record_provision,
    usage_entries,
    usage_row_hash,
    verify_usage_chain,
)
from store.db import database_proxy, open_database
from store.schema import ROLES, TABLES_BY_ROLE

T0 = datetime(2025, 4, 1, 0, 30, 0, 123_456, tzinfo=UTC)
ROWS = 7
MIDDLE = 4


def _append(i: int, **overrides: Any) -> auditlog.UsageEntry:
    fields: dict[str, Any] = {
        "at": T0 + timedelta(minutes=i),
        "user_id": f"op{i % 3:03d}",
        "terminal_id": f"term.{i % 2}",
        "task": "search.4info" if i % 2 else "card.check",
        "reason": f"窓口照会 {i}",
        "message_type": "cs.terminal.search",
        "target": f"住民票コード 1234567{i:04d}",
        "outcome": "ok" if i % 3 else "refused:not_permitted",
        "session_id": f"sess-{i // 3}",
        "evidence": bytes([i]) * 4,
    }
    fields.update(overrides)
    return append_usage(**fields)


def _fill(db: peewee.Database, n: int = ROWS) -> list[auditlog.UsageEntry]:
    entries = []
    for i in range(1, n + 1):
        with db.atomic():
            entries.append(_append(i))
    return entries


def _verify_then_undo(db: peewee.Database, tamper: Any) -> auditlog.VerifyResult:
    """Apply `tamper` in a transaction, verify inside it, and roll it back."""
    with db.atomic() as txn:
        tamper()
        result = verify_usage_chain(db)
        txn.rollback()
    return result


def _row(seq: int) -> UsageLogRow:
    return UsageLogRow.get(UsageLogRow.seq == seq)


# --------------------------------------------------------------------------------------------
# An untouched log verifies


def test_untouched_log_verifies(db: peewee.Database) -> None:
    entries = _fill(db)
    result = verify_usage_chain(db)
    assert result.ok
    assert result.rows_checked == ROWS
    assert result.first_bad_seq is None and result.problem is None
    assert result.head_seq == ROWS
    assert result.head_hash == entries[-1].row_hash.hex()
    assert "OK" in str(result) and f"{ROWS} rows" in str(result)


def test_empty_log_verifies(db: peewee.Database) -> None:
    result = verify_usage_chain(db)
    assert result.ok and result.rows_checked == 0 and result.head_seq == 0


def test_rows_chain_from_genesis_and_from_each_other(db: peewee.Database) -> None:
    entries = _fill(db, 3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].row_hash
    assert entries[2].prev_hash == entries[1].row_hash
    stored = _row(2)
    assert bytes(stored.row_hash) == entries[1].row_hash


def test_verify_uses_bound_database_when_none_given(db: peewee.Database) -> None:
    _fill(db, 2)
    assert verify_usage_chain().ok


def test_verify_reads_a_database_opened_apart(db: peewee.Database, store_url: str) -> None:
    """What ``juki audit verify NODE_ID`` does: open the node's store unbound and check it."""
    _fill(db, 3)
    UsageLogRow.update(task="edited").where(UsageLogRow.seq == 2).execute()
    other = open_database(store_url, bind=False)
    try:
        result = verify_usage_chain(other)
    finally:
        other.close()
    assert (result.ok, result.first_bad_seq, result.rows_checked) == (False, 2, 2)
    assert UsageLogRow._meta.database is database_proxy  # the models are bound back


# --------------------------------------------------------------------------------------------
# Editing any column of any row


def _changed(column: str, row: UsageLogRow) -> Any:
    value = getattr(row, column)
    if column == "at":
        return value + timedelta(microseconds=1)
    if column == "seq":
        return 1_000
    if isinstance(value, (bytes, memoryview)):
        raw = bytearray(bytes(value) or b"\x00")
        raw[0] ^= 0x01
        return bytes(raw)
    return value + "x"


EDITABLE = [f.name for f in UsageLogRow._meta.sorted_fields]


@pytest.mark.parametrize("column", EDITABLE)
def test_editing_any_column_of_any_row_is_named(db: peewee.Database, column: str) -> None:
    _fill(db)
    for seq in (1, MIDDLE, ROWS):

        def tamper(seq: int = seq) -> None:
            row = _row(seq)
            UsageLogRow.update({column: _changed(column, row)}).where(
                UsageLogRow.seq == seq
            ).execute()

        result = _verify_then_undo(db, tamper)
        assert not result.ok, (column, seq)
        assert result.first_bad_seq == seq, (column, seq, result)
        assert str(seq) in str(result)
    assert verify_usage_chain(db).ok  # every edit was rolled back


def test_editing_a_text_column_is_a_hash_mismatch(db: peewee.Database) -> None:
    _fill(db)
    result = _verify_then_undo(
        db,
        lambda: UsageLogRow.update(user_id="op999").where(UsageLogRow.seq == MIDDLE).execute(),
    )
    assert result.kind is ChainProblem.HASH_MISMATCH
    assert result.rows_checked == MIDDLE


# --------------------------------------------------------------------------------------------
# Deleting rows


@pytest.mark.parametrize(
    ("seq", "kind"),
    [
        (1, ChainProblem.MISSING_ROW),
        (MIDDLE, ChainProblem.MISSING_ROW),
        (ROWS, ChainProblem.TRUNCATED),  # only the chain head still knows this row existed
    ],
    ids=["first", "middle", "last"],
)
def test_deleting_a_row_is_named(db: peewee.Database, seq: int, kind: ChainProblem) -> None:
    _fill(db)
    UsageLogRow.delete().where(UsageLogRow.seq == seq).execute()
    result = verify_usage_chain(db)
    assert not result.ok
    assert result.first_bad_seq == seq
    assert result.kind is kind


def test_deleting_the_newest_rows_is_caught_by_the_chain_head(db: peewee.Database) -> None:
    _fill(db)
    UsageLogRow.delete().where(UsageLogRow.seq >= 5).execute()
    result = verify_usage_chain(db)
    assert (result.ok, result.first_bad_seq, result.kind) == (False, 5, ChainProblem.TRUNCATED)


def test_deleting_a_row_and_closing_the_gap_breaks_the_link(db: peewee.Database) -> None:
    _fill(db)
    UsageLogRow.delete().where(UsageLogRow.seq == MIDDLE).execute()
    for seq in range(MIDDLE + 1, ROWS + 1):  # renumber one by one (the PK forbids a clash)
        UsageLogRow.update(seq=seq - 1).where(UsageLogRow.seq == seq).execute()
    result = verify_usage_chain(db)
    assert (result.ok, result.first_bad_seq, result.kind) == (
        False,
        MIDDLE,
        ChainProblem.BROKEN_LINK,
    )


def test_deleting_the_chain_head_is_detected(db: peewee.Database) -> None:
    _fill(db, 2)
    UsageChainHeadRow.delete().execute()
    result = verify_usage_chain(db)
    assert not result.ok and result.kind is ChainProblem.HEAD_MISSING


# --------------------------------------------------------------------------------------------
# Reordering rows


def _swap_contents(a: int, b: int) -> None:
    columns = [f.name for f in UsageLogRow._meta.sorted_fields if f.name != "seq"]
    row_a, row_b = _row(a), _row(b)
    values_a = {c: getattr(row_a, c) for c in columns}
    values_b = {c: getattr(row_b, c) for c in columns}
    UsageLogRow.update(values_b).where(UsageLogRow.seq == a).execute()
    UsageLogRow.update(values_a).where(UsageLogRow.seq == b).execute()


@pytest.mark.parametrize(("a", "b"), [(MIDDLE, MIDDLE + 1), (1, ROWS), (2, 5)])
def test_swapping_two_rows_is_named(db: peewee.Database, a: int, b: int) -> None:
    _fill(db)
    _swap_contents(a, b)
    result = verify_usage_chain(db)
    assert not result.ok
    assert result.first_bad_seq == a
    assert result.kind is ChainProblem.BROKEN_LINK


# --------------------------------------------------------------------------------------------
# Inserting forged rows


def _forged_columns(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": T0 + timedelta(days=1),
        "user_id": "intruder",
        "terminal_id": "term.0",
        "task": "search.4info",
        "reason": "偽装",
        "message_type": "cs.terminal.search",
        "target": "住民票コード 99999999999",
        "outcome": "ok",
        "session_id": "sess-x",
        "evidence": b"",
    }


def _make_room_at(seq: int) -> None:
    for s in range(ROWS, seq - 1, -1):  # shift up, newest first (the PK forbids a clash)
        UsageLogRow.update(seq=s + 1).where(UsageLogRow.seq == s).execute()


def test_inserting_a_naively_forged_row_is_named(db: peewee.Database) -> None:
    entries = _fill(db)
    _make_room_at(MIDDLE)
    columns = _forged_columns(MIDDLE)
    # The forger copies the displaced row's link and hash rather than computing one.
    UsageLogRow.insert(
        prev_hash=entries[MIDDLE - 1].prev_hash, row_hash=entries[MIDDLE - 1].row_hash, **columns
    ).execute()
    result = verify_usage_chain(db)
    assert (result.ok, result.first_bad_seq) == (False, MIDDLE)


def test_inserting_a_well_formed_forged_row_is_named(db: peewee.Database) -> None:
    """The forger knows the algorithm: the forged row is self-consistent and links correctly.

    It is still caught, because the displaced row now shares its predecessor with the forgery.
    """
    entries = _fill(db)
    _make_room_at(MIDDLE)
    prev = entries[MIDDLE - 2].row_hash
    columns = _forged_columns(MIDDLE)
    row_hash = usage_row_hash(prev, **columns)
    UsageLogRow.insert(prev_hash=prev, row_hash=row_hash, **columns).execute()
    result = verify_usage_chain(db)
    assert (result.ok, result.first_bad_seq, result.kind) == (
        False,
        MIDDLE,
        ChainProblem.INSERTED_ROW,
    )


def test_appending_behind_the_appenders_back_is_named(db: peewee.Database) -> None:
    entries = _fill(db)
    columns = _forged_columns(ROWS + 1)
    row_hash = usage_row_hash(entries[-1].row_hash, **columns)
    UsageLogRow.insert(prev_hash=entries[-1].row_hash, row_hash=row_hash, **columns).execute()
    result = verify_usage_chain(db)
    assert (result.ok, result.first_bad_seq, result.kind) == (
        False,
        ROWS + 1,
        ChainProblem.BEYOND_HEAD,
    )


def test_a_row_before_the_first_is_named(db: peewee.Database) -> None:
    _fill(db, 3)
    columns = _forged_columns(0)
    UsageLogRow.insert(prev_hash=GENESIS_HASH, row_hash=b"\x00" * 32, **columns).execute()
    result = verify_usage_chain(db)
    assert (result.ok, result.first_bad_seq, result.kind) == (
        False,
        0,
        ChainProblem.UNEXPECTED_ROW,
    )


def test_rewriting_the_whole_chain_changes_the_head_hash(db: peewee.Database) -> None:
    """The documented limit: a full recomputation verifies, but not against an earlier head."""
    _fill(db, 3)
    before = verify_usage_chain(db)
    with db.atomic():
        UsageLogRow.delete().execute()
        UsageChainHeadRow.delete().execute()
        for i in range(1, 4):
            _append(i, user_id="rewritten")
    after = verify_usage_chain(db)
    assert after.ok
    assert after.head_hash != before.head_hash


# --------------------------------------------------------------------------------------------
# Appending rules


def test_append_needs_the_callers_transaction(db: peewee.Database) -> None:
    with pytest.raises(AuditLogError):
        _append(1)
    assert UsageLogRow.select().count() == 0


def test_a_rolled_back_operation_leaves_no_log_row_and_no_gap(db: peewee.Database) -> None:
    with db.atomic():
        _append(1)
    with db.atomic() as txn:
        _append(2)
        txn.rollback()
    with db.atomic():
        third = _append(3)
    assert third.seq == 2
    assert verify_usage_chain(db).ok


@pytest.mark.parametrize(
    "overrides",
    [
        {"target": "個人番号 123456789012"},
        {"target": "１２３４５６７８９０１２"},
        {"reason": "番号123456789012を確認"},
        {"outcome": "refused"},
        {"outcome": "refused:" + "x" * 57},
        {"outcome": "fine"},
        {"at": datetime(2025, 4, 1, 9, 0)},  # naive: JST or UTC?
        {"user_id": "x" * 65},
    ],
    ids=[
        "my-number",
        "full-width",
        "in-reason",
        "bare-refused",
        "long-code",
        "unknown",
        "naive",
        "long",
    ],
)
def test_bad_entries_are_refused(db: peewee.Database, overrides: dict[str, Any]) -> None:
    with db.atomic(), pytest.raises(AuditLogError):
        _append(1, **overrides)
    assert UsageLogRow.select().count() == 0


def test_a_resident_code_is_not_mistaken_for_a_my_number(db: peewee.Database) -> None:
    with db.atomic():
        entry = _append(1, target="12345678901")  # 住民票コード: eleven digits
    assert entry.target == "12345678901"


def test_times_are_stored_in_utc(db: peewee.Database) -> None:
    jst = datetime(2025, 4, 1, 9, 30, 0, 5, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    with db.atomic():
        _append(1, at=jst)
    [entry] = usage_entries()
    assert entry.at == datetime(2025, 4, 1, 9, 30, 0, 5, tzinfo=UTC)
    assert entry.at.tzinfo is UTC


def test_concurrent_appenders_never_share_a_predecessor(db: peewee.Database) -> None:
    per_thread = 40
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with db.atomic():
                    _append(i + 1, user_id=name)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(f"op.{n}",)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = list(UsageLogRow.select().order_by(UsageLogRow.seq))
    assert [r.seq for r in rows] == list(range(1, 2 * per_thread + 1))
    assert len({bytes(r.prev_hash) for r in rows}) == len(rows)
    assert {r.user_id for r in rows} == {"op.a", "op.b"}
    assert verify_usage_chain(db).ok


# --------------------------------------------------------------------------------------------
# Canonical encoding


_text = st.text(max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    a=st.tuples(_text, _text, st.binary(max_size=4)),
    b=st.tuples(_text, _text, st.binary(max_size=4)),
)
def test_distinct_rows_hash_differently(
    a: tuple[str, str, bytes], b: tuple[str, str, bytes]
) -> None:
    """Length-prefixing: ("ab", "c") and ("a", "bc") must not collide."""

    def digest(values: tuple[str, str, bytes]) -> bytes:
        user_id, terminal_id, evidence = values
        return usage_row_hash(
            GENESIS_HASH,
            seq=1,
            at=T0,
            user_id=user_id,
            terminal_id=terminal_id,
            task="t",
            reason="r",
            message_type="m",
            target="x",
            outcome="ok",
            session_id="s",
            evidence=evidence,
        )

    assert (digest(a) == digest(b)) == (a == b)


# --------------------------------------------------------------------------------------------
# Provision records and audit review queries


def _provide(i: int, **overrides: Any) -> auditlog.ProvisionEntry:
    fields: dict[str, Any] = {
        "at": T0 + timedelta(hours=i),
        "operator_id": "op001" if i % 2 else "op002",
        "terminal_id": "term.1",
        "recipient": "pref.04",
        "message_type": "pref.cs.identity_update",
        "legal_basis": "住基法30条の6",
        "target": f"1234567{i:04d}",
        "result": "provided",
        "reason": "",
        "msg_id": f"MSG{i:04d}",
    }
    fields.update(overrides)
    return record_provision(**fields)


def test_provisions_are_recorded_refused_ones_too(db: peewee.Database) -> None:
    _provide(1)
    refused = _provide(2, result="refused", reason="not_permitted", recipient="cardmgmt")
    assert refused.result == "refused" and refused.reason == "not_permitted"
    assert [e.msg_id for e in provision_entries(result="refused")] == ["MSG0002"]
    assert [e.msg_id for e in provision_entries()] == ["MSG0001", "MSG0002"]
    assert provision_entries(recipient="cardmgmt")[0].at == T0 + timedelta(hours=2)


@pytest.mark.parametrize(
    "overrides",
    [{"result": "maybe"}, {"result": "refused"}, {"target": "123456789012"}],
    ids=["unknown-result", "refused-without-reason", "my-number"],
)
def test_bad_provisions_are_refused(db: peewee.Database, overrides: dict[str, Any]) -> None:
    with pytest.raises(AuditLogError):
        _provide(1, **overrides)
    assert ProvisionLogRow.select().count() == 0


def test_provision_filters(db: peewee.Database) -> None:
    for i in range(1, 7):
        _provide(i, message_type="a" if i <= 3 else "b")
    assert [e.msg_id for e in provision_entries(operator="op002")] == [
        "MSG0002",
        "MSG0004",
        "MSG0006",
    ]
    assert [e.msg_id for e in provision_entries(message_type="b", limit=2)] == [
        "MSG0004",
        "MSG0005",
    ]
    assert [e.msg_id for e in provision_entries(target="12345670003")] == ["MSG0003"]
    window = provision_entries(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=4))
    assert [e.msg_id for e in window] == ["MSG0002", "MSG0003"]  # since inclusive, until not


def test_usage_filters(db: peewee.Database) -> None:
    entries = _fill(db, 9)
    assert [e.seq for e in usage_entries(operator="op001")] == [1, 4, 7]
    assert [e.seq for e in usage_entries(task="card.check")] == [2, 4, 6, 8]
    assert [e.seq for e in usage_entries(target=entries[4].target)] == [5]
    assert [e.seq for e in usage_entries(outcome="refused")] == [3, 6, 9]
    assert [e.seq for e in usage_entries(outcome="refused:not_permitted")] == [3, 6, 9]
    assert [e.seq for e in usage_entries(outcome="ok", limit=2)] == [1, 2]
    window = usage_entries(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert [e.seq for e in window] == [2, 3]
    assert [e.seq for e in usage_entries(operator="op001", task="card.check")] == [4]
    assert usage_entries(operator="nobody") == []
    assert usage_entries()[0] == entries[0]


def test_audit_tables_belong_to_every_role_with_a_database() -> None:
    for role in ROLES:
        for model in (UsageLogRow, UsageChainHeadRow, ProvisionLogRow):
            assert model in TABLES_BY_ROLE[role], (role, model)


def test_verify_result_prints_the_bad_row(db: peewee.Database) -> None:
    _fill(db, 3)
    UsageLogRow.update(reason="書き換え").where(UsageLogRow.seq == 2).execute()
    result = verify_usage_chain(db)
    text = str(result)
    assert "TAMPERED" in text and "seq 2" in text and "hash_mismatch" in text
    assert result.to_dict()["first_bad_seq"] == 2
    assert result.describe() == text
