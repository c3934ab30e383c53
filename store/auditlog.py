"""使用履歴・提供記録 (usage history and provision records): the audit logs every node keeps.

Two logs, with the seed's two retention rules (seed-digest §4.3, §5.3):

* 使用履歴 (usage history, `UsageLogRow`): who did what to the files — ユーザーID, 操作日時,
  事務種別, 処理事由 and so on. Kept 永年 (permanently); store/retention.py never touches it.
  Rows are hash-chained so that `juki audit verify` can show the log was not edited afterwards:
  ``row_hash = blake2b(prev_hash || canonical(every other column))``, the first row chaining from
  `GENESIS_HASH`. The newest seq and hash are also kept in a one-row table
  (``usage_chain_head``), which is what makes a deleted *tail* detectable: without it, removing
  the newest rows would leave a perfectly consistent shorter chain.
* 提供・移転の記録 (provision / transfer records, `ProvisionLogRow`): every provision of
  本人確認情報 or 送付先情報 to another body, including the refused ones. Kept 7 years.

What the chain proves, and what it does not: it detects any change made by someone who edits rows
with SQL but does not recompute every later hash and the chain head. Someone with write access who
recomputes the whole chain is detected only by comparing with an earlier printed or exported head
(`VerifyResult.head_hash`) or by the operators' per-command signatures kept in ``evidence``.

Appending is serialised: two appenders must never chain from the same predecessor. The appender
locks the chain-head row inside the caller's transaction (``SELECT ... FOR UPDATE`` on PostgreSQL,
the database write lock on SQLite), so the lock is held until the caller's business change and its
log row commit together.

A 個人番号 never goes into these logs in clear: `target` carries a 住民票コード or a description of
a search, and a twelve-digit run in any free-text column is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import peewee

from store.commit_rows import append_at_commit
from store.db import (
    StoreError,
    current_database,
    database_proxy,
    is_postgresql,
    is_sqlite,
    translate_errors,
)
from store.models import BaseModel, UtcMicrosField, micros_from_datetime
from store.schema import ROLES, register_tables

__all__ = [
    "GENESIS_HASH",
    "AuditLogError",
    "ChainProblem",
    "ProvisionEntry",
    "ProvisionLogRow",
    "UsageChainHeadRow",
    "UsageEntry",
    "UsageLogRow",
    "VerifyResult",
    "append_usage",
    "provision_entries",
    "record_provision",
    "record_provision_at_commit",
    "usage_entries",
    "usage_row_hash",
    "verify_usage_chain",
]

GENESIS_HASH: bytes = hashlib.blake2b(b"juki usage-log genesis v1", digest_size=32).digest()
"""What the first usage row chains from (a fixed, published value, so every node's log starts
from the same known point)."""

HASH_SIZE = 32
_ENCODING_TAG = b"juki-usage-v1\x00"
_HEAD_ID = 1
_VERIFY_BATCH = 5_000

# A 個人番号 is twelve digits; a 住民票コード eleven. A twelve-digit run in a log's free text is
# refused so that a careless caller cannot write one in clear.
_MY_NUMBER_RUN = re.compile(r"(?<![0-9０-９])[0-9０-９]{12}(?![0-9０-９])")
_OUTCOME = re.compile(r"^(ok|error|refused:[A-Za-z0-9_.:\-]{1,56})$")
PROVISION_RESULTS = ("provided", "refused")


class AuditLogError(StoreError):
    """A log entry was refused (bad outcome, 個人番号 in clear, no surrounding transaction)."""

    title = "操作記録エラー"


# --------------------------------------------------------------------------------------------
# Tables


class UsageLogRow(BaseModel):
    """使用履歴: one row per operation on the files; never purged (永年保存)."""

    seq = peewee.BigIntegerField(primary_key=True)
    at = UtcMicrosField(index=True)  # 操作日時
    user_id = peewee.CharField(max_length=64, index=True)  # ユーザーID (operator id)
    terminal_id = peewee.CharField(max_length=64)  # 操作端末ID
    task = peewee.CharField(max_length=64, index=True)  # 事務種別
    reason = peewee.TextField()  # 処理事由
    message_type = peewee.CharField(max_length=64)
    target = peewee.CharField(max_length=255, index=True)
    outcome = peewee.CharField(max_length=64, index=True)
    session_id = peewee.CharField(max_length=64)
    evidence = peewee.BlobField()  # the operator's per-command signature, if any
    prev_hash = peewee.BlobField()
    row_hash = peewee.BlobField()

    class Meta:
        table_name = "usage_log"


class UsageChainHeadRow(BaseModel):
    """The newest usage row's seq and hash (one row, id 1): makes a truncated tail visible."""

    id = peewee.IntegerField(primary_key=True)
    last_seq = peewee.BigIntegerField()
    last_hash = peewee.BlobField()

    class Meta:
        table_name = "usage_chain_head"


class ProvisionLogRow(BaseModel):
    """提供・移転の記録: one row per provision attempt, refused ones included; kept 7 years."""

    id = peewee.BigAutoField()
    at = UtcMicrosField(index=True)  # 提供・移転日時
    operator_id = peewee.CharField(max_length=64, index=True)
    terminal_id = peewee.CharField(max_length=64)
    recipient = peewee.CharField(max_length=64, index=True)
    message_type = peewee.CharField(max_length=64)
    legal_basis = peewee.CharField(max_length=128)  # e.g. 住基法30条の6
    target = peewee.CharField(max_length=255, index=True)
    result = peewee.CharField(max_length=16)  # provided / refused
    reason = peewee.CharField(max_length=64)  # refusal reason code, "" when provided
    msg_id = peewee.CharField(max_length=64, index=True)

    class Meta:
        table_name = "provision_log"


AUDIT_MODELS: tuple[type[BaseModel], ...] = (UsageLogRow, UsageChainHeadRow, ProvisionLogRow)

for _role in ROLES:
    register_tables(_role, *AUDIT_MODELS)


# --------------------------------------------------------------------------------------------
# Plain records handed to callers


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One 使用履歴 entry as callers see it (``at`` timezone-aware UTC)."""

    seq: int
    at: datetime
    user_id: str
    terminal_id: str
    task: str
    reason: str
    message_type: str
    target: str
    outcome: str
    session_id: str
    evidence: bytes
    prev_hash: bytes
    row_hash: bytes


@dataclass(frozen=True, slots=True)
class ProvisionEntry:
    """One 提供・移転の記録 as callers see it (``at`` timezone-aware UTC)."""

    id: int
    at: datetime
    operator_id: str
    terminal_id: str
    recipient: str
    message_type: str
    legal_basis: str
    target: str
    result: str
    reason: str
    msg_id: str


class ChainProblem(StrEnum):
    """Why a usage chain failed verification (stable codes for the CLI and tests)."""

    MISSING_ROW = "missing_row"  # a seq is absent: a row was deleted
    UNEXPECTED_ROW = "unexpected_row"  # a seq that cannot be there (below 1)
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous row's hash
    INSERTED_ROW = "inserted_row"  # two rows chain from the same predecessor
    HASH_MISMATCH = "hash_mismatch"  # the row's columns no longer give its hash
    HEAD_MISSING = "head_missing"  # rows exist but the chain head is gone
    TRUNCATED = "truncated"  # the head names rows that are gone
    BEYOND_HEAD = "beyond_head"  # rows after the head: appended outside append_usage
    HEAD_MISMATCH = "head_mismatch"  # the head's hash is not the last row's hash


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict of `verify_usage_chain`; ``str()`` is what ``juki audit verify`` prints.

    Attributes:
        ok: the chain is intact from genesis to the recorded head.
        rows_checked: rows read up to the verdict (all of them when ok).
        first_bad_seq: the seq of the first row that is wrong or missing; None when ok (and when
            only the head row is gone, which names no row).
        problem: a one-line human description; None when ok.
        kind: the machine-readable reason; None when ok.
        head_seq: the last seq of an intact chain (0 for an empty log); None when not ok.
        head_hash: the last row hash of an intact chain (hex); worth writing down or exporting,
            since it is what detects a wholesale recomputation later.
    """

    ok: bool
    rows_checked: int
    first_bad_seq: int | None
    problem: str | None
    kind: ChainProblem | None = None
    head_seq: int | None = None
    head_hash: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return (
                f"usage log OK: {self.rows_checked} rows verified, "
                f"head seq {self.head_seq} hash {self.head_hash}"
            )
        where = f"seq {self.first_bad_seq}" if self.first_bad_seq is not None else "chain head"
        return f"usage log TAMPERED at {where} ({self.kind}): {self.problem}"

    def describe(self) -> str:
        """The line ``juki audit verify`` prints (same as ``str()``)."""
        return str(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``juki audit verify --json``)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Hashing


def _utc(value: datetime, name: str = "at") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime is ambiguous (JST or UTC?); a log that is wrong by nine hours is worse
        # than a refused call.
        raise AuditLogError(f"{name} must be timezone-aware, got naive {value!r}")
    # Stored as whole microseconds (UtcMicrosField), so that is all the hash may see.
    return value.astimezone(UTC)


def _field(tag: int, payload: bytes) -> bytes:
    return struct.pack(">BI", tag, len(payload)) + payload


def usage_row_hash(
    prev_hash: bytes,
    *,
    seq: int,
    at: datetime,
    user_id: str,
    terminal_id: str,
    task: str,
    reason: str,
    message_type: str,
    target: str,
    outcome: str,
    session_id: str,
    evidence: bytes,
) -> bytes:
    """The hash a usage row must carry, given its predecessor's hash.

    The canonical encoding is a version tag then each column, in a fixed order, as (type tag,
    32-bit length, bytes): length-prefixing makes ("ab", "c") and ("a", "bc") differ, and the
    seq inside the hash makes two rows whose contents are swapped fail. ``at`` enters as exact
    microseconds since the epoch (UTC), exactly what the column stores. ``at`` must be aware.
    """
    parts = [
        _ENCODING_TAG,
        _field(1, struct.pack(">q", seq)),
        _field(2, struct.pack(">q", micros_from_datetime(at))),
    ]
    for text in (user_id, terminal_id, task, reason, message_type, target, outcome, session_id):
        parts.append(_field(3, text.encode("utf-8")))
    parts.append(_field(4, bytes(evidence)))
    h = hashlib.blake2b(digest_size=HASH_SIZE)
    h.update(bytes(prev_hash))
    h.update(b"".join(parts))
    return h.digest()


def _row_hash_of(row: UsageLogRow) -> bytes:
    return usage_row_hash(
        bytes(row.prev_hash),
        seq=row.seq,
        at=row.at,
        user_id=row.user_id,
        terminal_id=row.terminal_id,
        task=row.task,
        reason=row.reason,
        message_type=row.message_type,
        target=row.target,
        outcome=row.outcome,
        session_id=row.session_id,
        evidence=bytes(row.evidence),
    )


# --------------------------------------------------------------------------------------------
# Appending


_LIMITS: dict[type[BaseModel], dict[str, int]] = {}


def _check_lengths(model: type[BaseModel], columns: dict[str, Any]) -> None:
    # PostgreSQL refuses an over-long VARCHAR and SQLite silently keeps it; refuse on both.
    limits = _LIMITS.get(model)
    if limits is None:
        limits = _LIMITS[model] = {
            name: field.max_length
            for name, field in model._meta.fields.items()
            if getattr(field, "max_length", None) is not None
        }
    for name, value in columns.items():
        limit = limits.get(name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise AuditLogError(f"{name} is longer than {limit} characters")


def _refuse_my_number(**texts: str) -> None:
    for name, text in texts.items():
        if _MY_NUMBER_RUN.search(text):
            raise AuditLogError(f"{name} looks like it holds a 個人番号 (12 digits); not logged")


def _lock_head() -> UsageChainHeadRow:
    """Lock and return the chain head, creating it on the first append.

    PostgreSQL: a row lock (``FOR UPDATE``), held to the end of the caller's transaction; a
    second appender waits on it and then reads the head the first one committed (READ
    COMMITTED takes a fresh snapshot per statement). SQLite: a no-op UPDATE takes the database
    write lock before the head is read, so the read cannot be stale.
    """
    sqlite = is_sqlite(database_proxy)
    for _ in range(2):
        # A fresh query each time: peewee caches a query's result after its first execution.
        query = UsageChainHeadRow.select().where(UsageChainHeadRow.id == _HEAD_ID)
        if sqlite:
            UsageChainHeadRow.update(last_seq=UsageChainHeadRow.last_seq).where(
                UsageChainHeadRow.id == _HEAD_ID
            ).execute()
            head = query.first()
        else:
            head = query.for_update().first()
        if head is not None:
            return head
        # First append on this store. Two first appenders both get here; ON CONFLICT DO NOTHING
        # makes the loser wait for the winner's insert and then lock the winner's row.
        UsageChainHeadRow.insert(
            id=_HEAD_ID, last_seq=0, last_hash=GENESIS_HASH
        ).on_conflict_ignore().execute()
    raise AuditLogError("usage chain head could not be created")  # pragma: no cover


def append_usage(
    *,
    at: datetime,
    user_id: str,
    terminal_id: str,
    task: str,
    reason: str,
    message_type: str = "",
    target: str = "",
    outcome: str = "ok",
    session_id: str = "",
    evidence: bytes = b"",
) -> UsageEntry:
    """Append one 使用履歴 row to the chain.

    Must run inside the caller's transaction (``with db.atomic():``), so the log row commits
    with the operation it records and the chain-head lock lasts until then.

    Args:
        at: 操作日時, timezone-aware (stored as UTC).
        user_id: ユーザーID, the operator id (or ``system:<job>`` for a scheduled job).
        terminal_id: 操作端末ID.
        task: 事務種別 (e.g. ``search.4info``).
        reason: 処理事由.
        message_type: the message type the operation sent or handled, if any.
        target: what was touched: a 住民票コード or a search description, never a 個人番号.
        outcome: ``ok``, ``error`` or ``refused:<code>``.
        session_id: the operator session.
        evidence: the operator's per-command signature.

    Raises:
        AuditLogError: no transaction, a bad outcome, or a 12-digit run in a text column.
    """
    if not database_proxy.in_transaction():
        raise AuditLogError("append_usage must run inside the caller's transaction")
    if not _OUTCOME.match(outcome):
        raise AuditLogError(f"outcome must be ok, error or refused:<code>, got {outcome!r}")
    _refuse_my_number(target=target, reason=reason, task=task, message_type=message_type)
    at_utc = _utc(at)
    columns: dict[str, Any] = {
        "at": at_utc,
        "user_id": user_id,
        "terminal_id": terminal_id,
        "task": task,
        "reason": reason,
        "message_type": message_type,
        "target": target,
        "outcome": outcome,
        "session_id": session_id,
        "evidence": bytes(evidence),
    }
    _check_lengths(UsageLogRow, columns)
    with translate_errors():
        head = _lock_head()
        seq = int(head.last_seq) + 1
        prev = bytes(head.last_hash)
        row_hash = usage_row_hash(prev, seq=seq, **columns)
        UsageLogRow.insert(seq=seq, prev_hash=prev, row_hash=row_hash, **columns).execute()
        UsageChainHeadRow.update(last_seq=seq, last_hash=row_hash).where(
            UsageChainHeadRow.id == _HEAD_ID
        ).execute()
    return UsageEntry(seq=seq, prev_hash=prev, row_hash=row_hash, **columns)


# --------------------------------------------------------------------------------------------
# Verifying


def _rows_in_order() -> Iterator[UsageLogRow]:
    # Keyset pages: bounded memory for a log of millions of rows, on either engine.
    last: int | None = None
    while True:
        query = UsageLogRow.select().order_by(UsageLogRow.seq).limit(_VERIFY_BATCH)
        if last is not None:
            query = query.where(UsageLogRow.seq > last)
        page = list(query)
        yield from page
        if len(page) < _VERIFY_BATCH:
            return
        last = page[-1].seq


def _bad(checked: int, seq: int | None, kind: ChainProblem, problem: str) -> VerifyResult:
    return VerifyResult(False, checked, seq, problem, kind)


def verify_usage_chain(db: peewee.Database | None = None) -> VerifyResult:
    """Walk the usage log from genesis and report the first row that breaks the chain.

    Checks, for each row in seq order: its seq is the next one (a gap is a deleted row), its
    prev_hash is the previous row's hash (a swap, deletion or insertion breaks this), and its
    columns still give its row_hash (any edited column). Then the chain head must name the last
    row exactly (a deleted tail, or rows appended behind append_usage's back).

    Args:
        db: the node's database; the bound store database when None.
    """
    bound = current_database() if database_proxy.obj is not None else None
    target_db = db if db is not None else current_database()
    with contextlib.ExitStack() as stack:
        if target_db is not bound:
            stack.enter_context(target_db.bind_ctx(AUDIT_MODELS))
        # One snapshot for the rows and the head, or an append committed between reading the
        # last page and the head would look like a deleted tail. SQLite's read transaction is a
        # snapshot already; PostgreSQL's default (READ COMMITTED) snapshots per statement.
        if is_postgresql(target_db) and not target_db.in_transaction():
            stack.enter_context(target_db.atomic(isolation_level="REPEATABLE READ"))
        else:
            stack.enter_context(target_db.atomic())
        stack.enter_context(translate_errors())
        return _verify()


def _verify() -> VerifyResult:
    expected = 1
    prev = GENESIS_HASH
    prev_link = b""
    checked = 0
    for row in _rows_in_order():
        checked += 1
        seq = int(row.seq)
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return _bad(
                checked,
                expected,
                ChainProblem.MISSING_ROW,
                f"row(s) {missing} missing; next is {seq}",
            )
        if seq < expected:
            return _bad(checked, seq, ChainProblem.UNEXPECTED_ROW, f"seq {seq} cannot occur")
        if seq > 1 and bytes(row.prev_hash) == prev_link:
            # Both this row and the one before claim the same predecessor, which append_usage
            # never produces: the one before was slipped in (a self-consistent forgery).
            return _bad(
                checked,
                seq - 1,
                ChainProblem.INSERTED_ROW,
                f"rows {seq - 1} and {seq} both chain from row {seq - 2}: {seq - 1} was inserted",
            )
        if bytes(row.prev_hash) != prev:
            return _bad(
                checked,
                seq,
                ChainProblem.BROKEN_LINK,
                f"row {seq} does not chain from row {seq - 1} "
                "(moved, inserted, or a neighbour deleted)",
            )
        if _row_hash_of(row) != bytes(row.row_hash):
            return _bad(
                checked,
                seq,
                ChainProblem.HASH_MISMATCH,
                f"row {seq} was altered after it was written",
            )
        prev_link = prev
        prev = bytes(row.row_hash)
        expected += 1
    last_seq = expected - 1
    head = UsageChainHeadRow.get_or_none(UsageChainHeadRow.id == _HEAD_ID)
    if head is None:
        if last_seq == 0:
            return VerifyResult(True, 0, None, None, head_seq=0, head_hash=GENESIS_HASH.hex())
        return _bad(checked, None, ChainProblem.HEAD_MISSING, "the chain head row was deleted")
    head_seq = int(head.last_seq)
    if head_seq > last_seq:
        return _bad(
            checked,
            last_seq + 1,
            ChainProblem.TRUNCATED,
            f"rows {last_seq + 1}..{head_seq} were deleted from the end",
        )
    if head_seq < last_seq:
        return _bad(
            checked,
            head_seq + 1,
            ChainProblem.BEYOND_HEAD,
            f"rows {head_seq + 1}..{last_seq} were added outside append_usage",
        )
    if bytes(head.last_hash) != prev:
        return _bad(
            checked,
            last_seq if last_seq else None,
            ChainProblem.HEAD_MISMATCH,
            f"the chain head does not match row {last_seq}",
        )
    return VerifyResult(True, checked, None, None, head_seq=last_seq, head_hash=prev.hex())


# --------------------------------------------------------------------------------------------
# Provision records


_PROVISION_SQL: dict[tuple[str, tuple[str, ...], bool], str] = {}


def _provision_sql(db: Any, names: tuple[str, ...], returning: bool = True) -> str:
    key = (db.param, names, returning)
    sql = _PROVISION_SQL.get(key)
    if sql is None:
        p = db.param
        sql = _PROVISION_SQL[key] = (
            f'INSERT INTO "{ProvisionLogRow._meta.table_name}" ('
            + ", ".join(f'"{n}"' for n in names)
            + f") VALUES ({', '.join([p] * len(names))})"
            + (' RETURNING "id"' if returning else "")
        )
    return sql


def record_provision(
    *,
    at: datetime,
    operator_id: str,
    terminal_id: str,
    recipient: str,
    message_type: str,
    legal_basis: str,
    target: str,
    result: str,
    reason: str = "",
    msg_id: str = "",
) -> ProvisionEntry:
    """Record one provision or transfer (提供・移転), refused ones too.

    Args:
        at: 提供・移転日時, timezone-aware.
        operator_id: 操作者 (or the node's id for automatic provisions).
        recipient: the receiving node or body.
        legal_basis: the article that allows it (e.g. ``住基法30条の6``).
        target: a 住民票コード or a description; never a 個人番号.
        result: ``provided`` or ``refused``.
        reason: the refusal reason code (required when refused).
        msg_id: the message that carried (or asked for) it.
    """
    columns = _provision_columns(
        at,
        operator_id,
        terminal_id,
        recipient,
        message_type,
        legal_basis,
        target,
        result,
        reason,
        msg_id,
    )
    # raw SQL: every applied update is also a provision to the prefecture (30条の6), so this runs
    # once per update on the CS's hot path, where peewee's query building outweighed the insert
    db = ProvisionLogRow._meta.database
    with translate_errors():
        row = db.execute_sql(
            _provision_sql(db, tuple(columns)), _provision_params(columns)
        ).fetchone()
    return ProvisionEntry(id=int(row[0]), **columns)


def record_provision_at_commit(
    *,
    at: datetime,
    operator_id: str,
    terminal_id: str,
    recipient: str,
    message_type: str,
    legal_basis: str,
    target: str,
    result: str,
    reason: str = "",
    msg_id: str = "",
) -> None:
    """`record_provision` for a handler inside a group commit: the row is checked now and
    written with the transaction's other such rows just before it commits
    (store.commit_rows), or at once when no such batch is open. Nothing is returned: the row
    has no id yet."""
    columns = _provision_columns(
        at,
        operator_id,
        terminal_id,
        recipient,
        message_type,
        legal_basis,
        target,
        result,
        reason,
        msg_id,
    )
    db = ProvisionLogRow._meta.database
    sql = _provision_sql(db, tuple(columns), returning=False)
    params = _provision_params(columns)
    if not append_at_commit(db, sql, params):
        with translate_errors():
            db.execute_sql(sql, params)


def _provision_columns(
    at: datetime,
    operator_id: str,
    terminal_id: str,
    recipient: str,
    message_type: str,
    legal_basis: str,
    target: str,
    result: str,
    reason: str,
    msg_id: str,
) -> dict[str, Any]:
    """The row's columns, after every check a provision record must pass."""
    if result not in PROVISION_RESULTS:
        raise AuditLogError(f"result must be one of {PROVISION_RESULTS}, got {result!r}")
    if result == "refused" and not reason:
        raise AuditLogError("a refused provision needs its reason code")
    _refuse_my_number(target=target, reason=reason)
    columns: dict[str, Any] = {
        "at": _utc(at),
        "operator_id": operator_id,
        "terminal_id": terminal_id,
        "recipient": recipient,
        "message_type": message_type,
        "legal_basis": legal_basis,
        "target": target,
        "result": result,
        "reason": reason,
        "msg_id": msg_id,
    }
    _check_lengths(ProvisionLogRow, columns)
    return columns


def _provision_params(columns: dict[str, Any]) -> list[Any]:
    params = list(columns.values())
    params[0] = micros_from_datetime(columns["at"])
    return params


# --------------------------------------------------------------------------------------------
# Audit review queries


def _time_range(
    field: peewee.Field, since: datetime | None, until: datetime | None
) -> list[peewee.Expression]:
    conditions = []
    if since is not None:
        conditions.append(field >= _utc(since, "since"))
    if until is not None:
        conditions.append(field < _utc(until, "until"))
    return conditions


def _outcome_condition(field: peewee.Field, outcome: str) -> peewee.Expression:
    # "refused" matches every refused:<code>; anything else matches exactly.
    if outcome == "refused":
        return field.startswith("refused:")
    return field == outcome


def usage_entries(
    *,
    operator: str | None = None,
    task: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str | None = None,
    limit: int | None = None,
) -> list[UsageEntry]:
    """使用履歴 entries for audit review, oldest first.

    Args:
        operator: ユーザーID.
        task: 事務種別.
        target: exact target.
        since: inclusive lower bound on 操作日時.
        until: exclusive upper bound on 操作日時.
        outcome: ``ok``, ``error``, ``refused`` (any code) or ``refused:<code>``.
        limit: at most this many entries.
    """
    conditions: list[peewee.Expression] = _time_range(UsageLogRow.at, since, until)
    if operator is not None:
        conditions.append(UsageLogRow.user_id == operator)
    if task is not None:
        conditions.append(UsageLogRow.task == task)
    if target is not None:
        conditions.append(UsageLogRow.target == target)
    if outcome is not None:
        conditions.append(_outcome_condition(UsageLogRow.outcome, outcome))
    query = UsageLogRow.select().order_by(UsageLogRow.seq)
    if conditions:
        query = query.where(*conditions)
    if limit is not None:
        query = query.limit(limit)
    with translate_errors():
        return [
            UsageEntry(
                seq=int(r.seq),
                at=r.at,
                user_id=r.user_id,
                terminal_id=r.terminal_id,
                task=r.task,
                reason=r.reason,
                message_type=r.message_type,
                target=r.target,
                outcome=r.outcome,
                session_id=r.session_id,
                evidence=bytes(r.evidence),
                prev_hash=bytes(r.prev_hash),
                row_hash=bytes(r.row_hash),
            )
            for r in query
        ]


def provision_entries(
    *,
    operator: str | None = None,
    recipient: str | None = None,
    message_type: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    result: str | None = None,
    limit: int | None = None,
) -> list[ProvisionEntry]:
    """提供・移転の記録 for audit review, oldest first (same bounds as `usage_entries`)."""
    conditions: list[peewee.Expression] = _time_range(ProvisionLogRow.at, since, until)
    if operator is not None:
        conditions.append(ProvisionLogRow.operator_id == operator)
    if recipient is not None:
        conditions.append(ProvisionLogRow.recipient == recipient)
    if message_type is not None:
        conditions.append(ProvisionLogRow.message_type == message_type)
    if target is not None:
        conditions.append(ProvisionLogRow.target == target)
    if result is not None:
        conditions.append(ProvisionLogRow.result == result)
    query = ProvisionLogRow.select().order_by(ProvisionLogRow.at, ProvisionLogRow.id)
    if conditions:
        query = query.where(*conditions)
    if limit is not None:
        query = query.limit(limit)
    with translate_errors():
        return [
            ProvisionEntry(
                id=int(r.id),
                at=r.at,
                operator_id=r.operator_id,
                terminal_id=r.terminal_id,
                recipient=r.recipient,
                message_type=r.message_type,
                legal_basis=r.legal_basis,
                target=r.target,
                result=r.result,
                reason=r.reason,
                msg_id=r.msg_id,
            )
            for r in query
        ]
