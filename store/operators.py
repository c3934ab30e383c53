"""操作者管理 (operator management): operators, the 操作権限と事務の対応表, grants, 照合情報,
operator card keys, login challenges, sessions and lockouts — the CS's tables for T-01 / T-17.

The seed's procedure (seed-digest §4.6): 「操作者管理者は操作者に対し、操作権限と事務の対応表に
基づき、操作者IDに対し、事務に必要な操作権限のみを付与し、生体認証情報を登録する。」 Here the
対応表 maps a 事務 (task) to the operator-request message types it needs (``permissions``, exact
names or ``prefix.*`` patterns); an operator holds a set of tasks; a request is allowed when one
of the operator's tasks covers its message type. Changes take effect at the next request, because
the CS reads grants and status on every request.

Nothing here keeps a biometric sample: only the cancelable template and its key (store/biometric).

`command_message` is the one canonical encoding that a terminal signs with its session key and the
CS verifies, so it lives in the store package both sides may import.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import msgpack
import peewee

from store.db import StoreError, translate_errors
from store.models import BaseModel, UtcMicrosField
from store.schema import register_tables

__all__ = [
    "CARD_SIGNATURE_CONTEXT",
    "DEFAULT_TASKS",
    "SESSION_FREE_TYPES",
    "OperatorError",
    "OperatorRecord",
    "OperatorStatus",
    "SessionRecord",
    "SessionState",
    "allows",
    "card_certified_message",
    "command_message",
]

CARD_SIGNATURE_CONTEXT = b"juki-operator-card-v1\x00"
"""The operator card's INTERNAL AUTHENTICATE prefix (tui/card/operator.SIGNATURE_CONTEXT; a test
keeps the two equal — the CS may not import tui)."""
COMMAND_CONTEXT = b"juki-op-cmd-v1\x00"
CHALLENGE_BYTES = 32
CHALLENGE_SECONDS = 60.0
SESSION_MAX_SECONDS = 10 * 3600.0
"""A session ends after a working day at most, whatever the activity."""

DEFAULT_TASKS: dict[str, tuple[str, ...]] = {
    "本人確認情報検索": ("cs.op.search", "cs.op.lookup", "cs.op.number.reveal"),
    "全国サーバ照会": ("cs.op.national_query",),
    "特例転入": ("cs.op.pending_moveouts", "cs.op.tokurei_movein"),
    "住民票コード変更": (
        "cs.op.code_candidates",
        "cs.op.code_change",
        "cs.op.lookup",
        "cs.op.output",
    ),
    "カード関連事務": ("cs.op.card.*", "cs.op.output"),
    "統計": ("cs.op.statistics",),
    "操作者管理": ("cs.op.admin.*",),
    "監査": ("cs.op.audit.*",),
    # ---- issue 6 counter tasks (nodes/cs_tasks.py) ----
    # V-12: entering a 職権修正 and confirming it are separate 事務, granted to different staff
    "本人確認情報訂正": ("cs.op.correction.propose", "cs.op.correction.list", "cs.op.lookup"),
    "本人確認情報管理責任者": (
        "cs.op.correction.approve",
        "cs.op.correction.reject",
        "cs.op.correction.list",
        "cs.op.lookup",
    ),
    "送付先情報通知": ("cs.op.destinations",),
    "整合性確認": ("cs.op.consistency.*",),
}
"""The 操作権限と事務の対応表 a new CS starts with (the 操作者管理者 may change it)."""

SESSION_FREE_TYPES = frozenset({"cs.op.lock", "cs.op.logout", "cs.op.session_info"})
"""Requests any session may send about itself (no task needed)."""


class OperatorError(StoreError):
    """An operator-management request that cannot be applied (unknown operator, duplicate …)."""

    title = "操作者管理エラー"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class OperatorStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class SessionState(StrEnum):
    OPEN = "open"
    LOCKED = "locked"
    CLOSED = "closed"  # logged out
    REVOKED = "revoked"  # the operator was revoked


# --------------------------------------------------------------------------------------------
# Tables


class OperatorRow(BaseModel):
    """操作者: one row per 操作者ID (never deleted: revoked operators stay for the audit trail)."""

    operator_id = peewee.CharField(max_length=32, primary_key=True)
    name = peewee.CharField(max_length=100)
    status = peewee.CharField(max_length=16, default=OperatorStatus.ACTIVE.value)
    card_serial = peewee.CharField(max_length=32, default="")
    card_public_key = peewee.BlobField(null=True)  # the REGISTERED key; the card's claim is ignored
    template_key = peewee.BlobField(null=True)  # cancelable-transform key (照合情報)
    template = peewee.BlobField(null=True)  # the transformed template; never the sample
    enrolled_at = UtcMicrosField(null=True)
    failures = peewee.IntegerField(default=0)
    locked_until = UtcMicrosField(null=True)
    created_at = UtcMicrosField()
    updated_at = UtcMicrosField()

    class Meta:
        table_name = "operator"


class TaskPermissionRow(BaseModel):
    """操作権限と事務の対応表: one row per (事務, permission)."""

    task = peewee.CharField(max_length=64)
    permission = peewee.CharField(max_length=64)

    class Meta:
        table_name = "task_permission"
        indexes = ((("task", "permission"), True),)


class OperatorGrantRow(BaseModel):
    """The tasks granted to one operator."""

    operator_id = peewee.CharField(max_length=32, index=True)
    task = peewee.CharField(max_length=64)

    class Meta:
        table_name = "operator_grant"
        indexes = ((("operator_id", "task"), True),)


class LoginChallengeRow(BaseModel):
    """A one-time challenge the operator card must sign (proof of possession)."""

    challenge_id = peewee.CharField(max_length=32, primary_key=True)
    operator_id = peewee.CharField(max_length=32)
    terminal_id = peewee.CharField(max_length=64)
    challenge = peewee.BlobField()
    expires_at = UtcMicrosField()
    used = peewee.BooleanField(default=False)

    class Meta:
        table_name = "login_challenge"


class SessionRow(BaseModel):
    """操作者セッション: bound to one terminal, one operator and the card that certified its key."""

    session_id = peewee.CharField(max_length=64, primary_key=True)
    operator_id = peewee.CharField(max_length=32, index=True)
    terminal_id = peewee.CharField(max_length=64)
    card_public_key = peewee.BlobField()
    session_key = peewee.BlobField()  # Ed25519 verify key certified by the card
    state = peewee.CharField(max_length=16)
    opened_at = UtcMicrosField()
    last_seen = UtcMicrosField()
    expires_at = UtcMicrosField()

    class Meta:
        table_name = "operator_session"


OPERATOR_MODELS: tuple[type[BaseModel], ...] = (
    OperatorRow,
    TaskPermissionRow,
    OperatorGrantRow,
    LoginChallengeRow,
    SessionRow,
)
register_tables("municipal_cs", *OPERATOR_MODELS)


# --------------------------------------------------------------------------------------------
# Plain records


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    operator_id: str
    name: str
    status: OperatorStatus
    tasks: tuple[str, ...]
    card_serial: str
    card_public_key: bytes | None
    template_key: bytes | None
    template: bytes | None
    enrolled_at: datetime | None
    failures: int
    locked_until: datetime | None

    @property
    def enrolled(self) -> bool:
        return self.template is not None and self.template_key is not None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    operator_id: str
    terminal_id: str
    card_public_key: bytes
    session_key: bytes
    state: SessionState
    opened_at: datetime
    last_seen: datetime
    expires_at: datetime


# --------------------------------------------------------------------------------------------
# Signing rules (shared by the CS and the terminal)


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return [[k, _canonical(value[k])] for k in sorted(value)]
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def command_message(message_type: str, body: Mapping[str, Any]) -> bytes:
    """What the session key signs: the type and the body without its signature, keys sorted."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return COMMAND_CONTEXT + msgpack.packb([message_type, _canonical(unsigned)], use_bin_type=True)


def card_certified_message(challenge: bytes, session_key: bytes) -> bytes:
    """What the operator card signs at login: the CS's challenge and the new session key."""
    return challenge + session_key


def allows(permissions: Iterable[str], message_type: str) -> bool:
    """True when one permission names ``message_type`` exactly or as a ``prefix.*`` pattern."""
    for p in permissions:
        if p == message_type or (p.endswith(".*") and message_type.startswith(p[:-1])):
            return True
    return False


# --------------------------------------------------------------------------------------------
# 操作権限と事務の対応表


def ensure_default_tasks() -> None:
    """Fill an empty 対応表 with DEFAULT_TASKS (a CS that already has one keeps it)."""
    with translate_errors():
        if TaskPermissionRow.select().exists():
            return
        TaskPermissionRow.insert_many(
            [{"task": t, "permission": p} for t, ps in DEFAULT_TASKS.items() for p in ps]
        ).execute()


def task_table() -> dict[str, tuple[str, ...]]:
    with translate_errors():
        rows = list(
            TaskPermissionRow.select().order_by(TaskPermissionRow.task, TaskPermissionRow.id)
        )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r.task, []).append(r.permission)
    return {k: tuple(v) for k, v in out.items()}


def set_task(task: str, permissions: Iterable[str]) -> None:
    """Replace one 事務's permissions (an empty list removes the 事務 and its grants)."""
    perms = sorted(set(permissions))
    for p in perms:
        if not p.startswith("cs.op.") or " " in p:
            raise OperatorError("bad_permission", f"not an operator request type: {p!r}")
    with translate_errors():
        TaskPermissionRow.delete().where(TaskPermissionRow.task == task).execute()
        if perms:
            TaskPermissionRow.insert_many(
                [{"task": task, "permission": p} for p in perms]
            ).execute()
        else:
            OperatorGrantRow.delete().where(OperatorGrantRow.task == task).execute()


def permissions_of(operator_id: str) -> tuple[str, ...]:
    """Every permission the operator's granted tasks carry."""
    with translate_errors():
        rows = (
            TaskPermissionRow.select(TaskPermissionRow.permission)
            .join(OperatorGrantRow, on=(OperatorGrantRow.task == TaskPermissionRow.task))
            .where(OperatorGrantRow.operator_id == operator_id)
            .distinct()
        )
        return tuple(sorted(r.permission for r in rows))


# --------------------------------------------------------------------------------------------
# Operators


def _tasks_of(operator_id: str) -> tuple[str, ...]:
    rows = OperatorGrantRow.select().where(OperatorGrantRow.operator_id == operator_id)
    return tuple(sorted(r.task for r in rows))


def _record(row: OperatorRow) -> OperatorRecord:
    return OperatorRecord(
        operator_id=row.operator_id,
        name=row.name,
        status=OperatorStatus(row.status),
        tasks=_tasks_of(row.operator_id),
        card_serial=row.card_serial,
        card_public_key=bytes(row.card_public_key) if row.card_public_key is not None else None,
        template_key=bytes(row.template_key) if row.template_key is not None else None,
        template=bytes(row.template) if row.template is not None else None,
        enrolled_at=row.enrolled_at,
        failures=int(row.failures),
        locked_until=row.locked_until,
    )


def _row(operator_id: str) -> OperatorRow:
    row = OperatorRow.get_or_none(OperatorRow.operator_id == operator_id)
    if row is None:
        raise OperatorError("unknown_operator", f"no operator {operator_id!r}")
    return row


def get_operator(operator_id: str) -> OperatorRecord | None:
    with translate_errors():
        row = OperatorRow.get_or_none(OperatorRow.operator_id == operator_id)
        return _record(row) if row is not None else None


def list_operators() -> list[OperatorRecord]:
    with translate_errors():
        return [_record(r) for r in OperatorRow.select().order_by(OperatorRow.operator_id)]


def _check_tasks(tasks: Iterable[str]) -> list[str]:
    wanted = sorted(set(tasks))
    known = set(task_table())
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise OperatorError("unknown_task", f"not in the 対応表: {', '.join(unknown)}")
    return wanted


def _set_grants(operator_id: str, tasks: list[str]) -> None:
    OperatorGrantRow.delete().where(OperatorGrantRow.operator_id == operator_id).execute()
    if tasks:
        OperatorGrantRow.insert_many(
            [{"operator_id": operator_id, "task": t} for t in tasks]
        ).execute()


def register_operator(operator_id: str, name: str, tasks: Iterable[str], *, now: datetime) -> None:
    """操作者登録: a new 操作者ID with only the tasks its work needs."""
    if (
        not operator_id
        or len(operator_id) > 32
        or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in operator_id)
    ):
        raise OperatorError("bad_operator_id", "操作者ID is 1-32 of A-Z a-z 0-9 . _ -")
    with translate_errors():
        if OperatorRow.get_or_none(OperatorRow.operator_id == operator_id) is not None:
            raise OperatorError("duplicate", f"operator {operator_id!r} exists")
        granted = _check_tasks(tasks)
        OperatorRow.insert(
            operator_id=operator_id, name=name, created_at=now, updated_at=now
        ).execute()
        _set_grants(operator_id, granted)


def change_operator(
    operator_id: str, *, now: datetime, name: str | None = None, tasks: Iterable[str] | None = None
) -> None:
    """操作者変更 (e.g. on a staff transfer): name and/or the granted tasks."""
    with translate_errors():
        row = _row(operator_id)
        if row.status != OperatorStatus.ACTIVE.value:
            raise OperatorError("revoked", f"operator {operator_id!r} is revoked")
        if tasks is not None:
            _set_grants(operator_id, _check_tasks(tasks))
        OperatorRow.update(name=name if name is not None else row.name, updated_at=now).where(
            OperatorRow.operator_id == operator_id
        ).execute()


def enrol_template(operator_id: str, key: bytes, template: bytes, *, now: datetime) -> None:
    """生体認証情報の登録: keep the template and its key (a new key cancels the old)."""
    with translate_errors():
        _row(operator_id)
        OperatorRow.update(
            template_key=key, template=template, enrolled_at=now, updated_at=now
        ).where(OperatorRow.operator_id == operator_id).execute()


def set_card(operator_id: str, serial: str, public_key: bytes, *, now: datetime) -> None:
    """操作者カード交付: register the new card's public key (the old card stops working)."""
    if len(public_key) != 32:
        raise OperatorError("bad_key", "an operator card key is 32 bytes")
    with translate_errors():
        _row(operator_id)
        OperatorRow.update(card_serial=serial, card_public_key=public_key, updated_at=now).where(
            OperatorRow.operator_id == operator_id
        ).execute()
        # a session certified by the old card ends with it
        SessionRow.update(state=SessionState.REVOKED.value).where(
            (SessionRow.operator_id == operator_id)
            & (SessionRow.card_public_key != public_key)
            & (SessionRow.state.in_([SessionState.OPEN.value, SessionState.LOCKED.value]))
        ).execute()


def revoke_operator(operator_id: str, *, now: datetime) -> int:
    """操作者削除 (失効): refuse every later request; returns the sessions ended."""
    with translate_errors():
        _row(operator_id)
        OperatorRow.update(status=OperatorStatus.REVOKED.value, updated_at=now).where(
            OperatorRow.operator_id == operator_id
        ).execute()
        OperatorGrantRow.delete().where(OperatorGrantRow.operator_id == operator_id).execute()
        return int(
            SessionRow.update(state=SessionState.REVOKED.value)
            .where(
                (SessionRow.operator_id == operator_id)
                & (SessionRow.state.in_([SessionState.OPEN.value, SessionState.LOCKED.value]))
            )
            .execute()
        )


def record_failure(
    operator_id: str, *, now: datetime, limit: int, lockout_seconds: float
) -> tuple[int, datetime | None]:
    """Count a failed login; at ``limit`` the operator is locked out. Returns (failures, until)."""
    with translate_errors():
        row = OperatorRow.get_or_none(OperatorRow.operator_id == operator_id)
        if row is None:
            return 0, None
        failures = int(row.failures) + 1
        until = row.locked_until
        if failures >= limit:
            until = now + timedelta(seconds=lockout_seconds)
            failures = 0
        OperatorRow.update(failures=failures, locked_until=until).where(
            OperatorRow.operator_id == operator_id
        ).execute()
        return failures, until


def clear_failures(operator_id: str) -> None:
    with translate_errors():
        OperatorRow.update(failures=0, locked_until=None).where(
            OperatorRow.operator_id == operator_id
        ).execute()


# --------------------------------------------------------------------------------------------
# Challenges and sessions


def new_challenge(
    operator_id: str, terminal_id: str, *, now: datetime
) -> tuple[str, bytes, datetime]:
    challenge_id = secrets.token_hex(16)
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    expires = now + timedelta(seconds=CHALLENGE_SECONDS)
    with translate_errors():
        LoginChallengeRow.delete().where(LoginChallengeRow.expires_at < now).execute()
        LoginChallengeRow.insert(
            challenge_id=challenge_id,
            operator_id=operator_id,
            terminal_id=terminal_id,
            challenge=challenge,
            expires_at=expires,
        ).execute()
    return challenge_id, challenge, expires


def take_challenge(
    challenge_id: str, operator_id: str, terminal_id: str, *, now: datetime
) -> bytes | None:
    """The challenge, spent; None when unknown, used, expired or issued to someone else."""
    with translate_errors():
        row = LoginChallengeRow.get_or_none(LoginChallengeRow.challenge_id == challenge_id)
        if row is None or row.used or row.expires_at < now:
            return None
        if row.operator_id != operator_id or row.terminal_id != terminal_id:
            return None
        LoginChallengeRow.update(used=True).where(
            LoginChallengeRow.challenge_id == challenge_id
        ).execute()
        return bytes(row.challenge)


def _session(row: SessionRow) -> SessionRecord:
    return SessionRecord(
        session_id=row.session_id,
        operator_id=row.operator_id,
        terminal_id=row.terminal_id,
        card_public_key=bytes(row.card_public_key),
        session_key=bytes(row.session_key),
        state=SessionState(row.state),
        opened_at=row.opened_at,
        last_seen=row.last_seen,
        expires_at=row.expires_at,
    )


def open_session(
    operator_id: str, terminal_id: str, card_public_key: bytes, session_key: bytes, *, now: datetime
) -> SessionRecord:
    session_id = secrets.token_hex(16)
    with translate_errors():
        SessionRow.insert(
            session_id=session_id,
            operator_id=operator_id,
            terminal_id=terminal_id,
            card_public_key=card_public_key,
            session_key=session_key,
            state=SessionState.OPEN.value,
            opened_at=now,
            last_seen=now,
            expires_at=now + timedelta(seconds=SESSION_MAX_SECONDS),
        ).execute()
        return _session(SessionRow.get(SessionRow.session_id == session_id))


def get_session(session_id: str) -> SessionRecord | None:
    with translate_errors():
        row = SessionRow.get_or_none(SessionRow.session_id == session_id)
        return _session(row) if row is not None else None


def touch_session(session_id: str, *, now: datetime) -> None:
    with translate_errors():
        SessionRow.update(last_seen=now).where(SessionRow.session_id == session_id).execute()


def set_session_state(session_id: str, state: SessionState) -> None:
    with translate_errors():
        SessionRow.update(state=state.value).where(SessionRow.session_id == session_id).execute()


def resume_session(
    session_id: str, session_key: bytes, card_public_key: bytes, *, now: datetime
) -> None:
    """Unlock: the same operator re-authenticated; a fresh session key replaces the old one."""
    with translate_errors():
        SessionRow.update(
            state=SessionState.OPEN.value,
            session_key=session_key,
            card_public_key=card_public_key,
            last_seen=now,
        ).where(SessionRow.session_id == session_id).execute()
