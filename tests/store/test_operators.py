"""操作者管理 tables (store/operators.py) on SQLite and PostgreSQL: the 対応表 and grants, card
keys and sessions, lockout, revocation; and the signing rules shared by CS and terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import peewee
import pytest

from store import operators as ops
from store.operators import OperatorError, SessionState

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


@pytest.fixture
def store(db: peewee.Database) -> peewee.Database:
    db.create_tables(ops.OPERATOR_MODELS)
    ops.ensure_default_tasks()
    return db


def test_permissions_follow_the_granted_tasks_and_change_at_once(store: peewee.Database) -> None:
    ops.register_operator("clerk", "窓口", ["統計"], now=NOW)
    perms = ops.permissions_of("clerk")
    assert ops.allows(perms, "cs.op.statistics") and not ops.allows(perms, "cs.op.search")
    ops.change_operator("clerk", now=NOW, tasks=["統計", "本人確認情報検索"])
    assert ops.allows(ops.permissions_of("clerk"), "cs.op.search")
    ops.set_task("統計", [])  # the 事務 leaves the 対応表, and its grants with it
    assert ops.get_operator("clerk").tasks == ("本人確認情報検索",)  # type: ignore[union-attr]


def test_patterns_in_the_table() -> None:
    assert ops.allows(["cs.op.admin.*"], "cs.op.admin.revoke")
    assert not ops.allows(["cs.op.admin.*"], "cs.op.adminx")
    assert not ops.allows(["cs.op.admin"], "cs.op.admin.revoke")


def test_registration_refuses_unknown_tasks_duplicates_and_bad_ids(store: peewee.Database) -> None:
    with pytest.raises(OperatorError) as unknown:
        ops.register_operator("x", "X", ["存在しない事務"], now=NOW)
    assert unknown.value.code == "unknown_task"
    ops.register_operator("x", "X", [], now=NOW)
    with pytest.raises(OperatorError) as dup:
        ops.register_operator("x", "X", [], now=NOW)
    assert dup.value.code == "duplicate"
    with pytest.raises(OperatorError) as bad:
        ops.register_operator("名前", "X", [], now=NOW)
    assert bad.value.code == "bad_operator_id"
    with pytest.raises(OperatorError):
        ops.set_task("危険", ["registry.cs.code_change"])  # not an operator request


def test_lockout_after_the_limit_and_reset(store: peewee.Database) -> None:
    ops.register_operator("y", "Y", [], now=NOW)
    assert ops.record_failure("y", now=NOW, limit=3, lockout_seconds=60) == (1, None)
    ops.record_failure("y", now=NOW, limit=3, lockout_seconds=60)
    _, until = ops.record_failure("y", now=NOW, limit=3, lockout_seconds=60)
    assert until == NOW + timedelta(seconds=60)
    assert ops.get_operator("y").locked_until == until  # type: ignore[union-attr]
    ops.clear_failures("y")
    assert ops.get_operator("y").locked_until is None  # type: ignore[union-attr]


def test_challenges_are_one_time_and_bound(store: peewee.Database) -> None:
    cid, challenge, _ = ops.new_challenge("z", "term.1", now=NOW)
    assert ops.take_challenge(cid, "z", "term.2", now=NOW) is None  # another terminal
    assert ops.take_challenge(cid, "z", "term.1", now=NOW) == challenge
    assert ops.take_challenge(cid, "z", "term.1", now=NOW) is None  # spent
    late, _, _ = ops.new_challenge("z", "term.1", now=NOW)
    assert ops.take_challenge(late, "z", "term.1", now=NOW + timedelta(minutes=5)) is None


def test_revocation_and_a_new_card_end_sessions(store: peewee.Database) -> None:
    ops.register_operator("w", "W", [], now=NOW)
    ops.set_card("w", "1", b"\x01" * 32, now=NOW)
    s = ops.open_session("w", "term.1", b"\x01" * 32, b"\x02" * 32, now=NOW)
    ops.set_card("w", "2", b"\x03" * 32, now=NOW)
    assert ops.get_session(s.session_id).state is SessionState.REVOKED  # type: ignore[union-attr]
    s2 = ops.open_session("w", "term.1", b"\x03" * 32, b"\x02" * 32, now=NOW)
    assert ops.revoke_operator("w", now=NOW) == 1
    assert ops.get_session(s2.session_id).state is SessionState.REVOKED  # type: ignore[union-attr]
    assert ops.get_operator("w").tasks == ()  # type: ignore[union-attr]


def test_command_encoding_is_canonical_and_covers_everything_but_the_signature() -> None:
    a = ops.command_message("cs.op.x", {"b": 1, "a": {"y": 2, "x": [1, 2]}, "signature": b"s"})
    b = ops.command_message("cs.op.x", {"a": {"x": [1, 2], "y": 2}, "b": 1})
    assert a == b
    assert ops.command_message("cs.op.y", {"a": {"x": [1, 2], "y": 2}, "b": 1}) != a
    assert ops.command_message("cs.op.x", {"a": {"x": [2, 1], "y": 2}, "b": 1}) != a


def test_card_context_matches_the_operator_card() -> None:
    from tui.card.operator import SIGNATURE_CONTEXT

    assert ops.CARD_SIGNATURE_CONTEXT == SIGNATURE_CONTEXT
