"""訂正の記録 (correction records): proposed 職権修正 awaiting a second operator; 整合性確認 runs.

V-12 / T-15: a correction of 本人確認情報 needs the 本人確認情報管理責任者's permission and is
checked by someone other than the person who entered it (「入力、削除及び訂正を行った者以外の者が
確認する」); the correction is recorded and the record kept for the legal period. So a proposal
row is never deleted (store/retention.py does not know this table on purpose): it keeps the
proposer, the approver or rejecter, both terminals, the times, the values before and after and
the outcome. The decision is a conditional update on ``status = pending``, so two approvers
racing on one proposal cannot both win.

The 整合性確認 (CS-6) run table keeps the operator's runs and their summaries, so the terminal can
show the last report after a restart of the CS.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import peewee

from store.db import StoreError, current_database, translate_errors
from store.models import BaseModel, MsgpackField, UtcMicrosField
from store.schema import register_tables

__all__ = [
    "ConsistencyRun",
    "CorrectionError",
    "CorrectionStatus",
    "DestinationCounts",
    "Proposal",
    "abandon_running",
    "decide",
    "destination_counts",
    "ensure_tables",
    "finish_run",
    "get_proposal",
    "last_run",
    "list_proposals",
    "new_run",
    "propose",
    "running_run",
    "update_run",
]


class CorrectionError(StoreError):
    """A decision that cannot be applied (unknown proposal, already decided)."""

    title = "訂正処理エラー"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class CorrectionStatus(StrEnum):
    PENDING = "pending"  # 確認待ち
    APPROVED = "approved"  # 承認済み (sent to the registry)
    REJECTED = "rejected"  # 却下


class CorrectionRow(BaseModel):
    """One proposed 職権修正 and its decision; kept for the legal period (never purged)."""

    proposal_id = peewee.CharField(max_length=32, primary_key=True)
    resident_code = peewee.CharField(max_length=11, index=True)
    changes = MsgpackField()  # item → corrected value
    before = MsgpackField()  # item → value on file when proposed
    note = peewee.CharField(max_length=500)  # 訂正理由
    status = peewee.CharField(max_length=16, index=True)
    proposer_id = peewee.CharField(max_length=64)
    proposer_terminal = peewee.CharField(max_length=64)
    proposed_at = UtcMicrosField()
    decided_by = peewee.CharField(max_length=64, null=True)
    decided_terminal = peewee.CharField(max_length=64, null=True)
    decided_at = UtcMicrosField(null=True)
    decision_note = peewee.CharField(max_length=500, null=True)

    class Meta:
        table_name = "correction_proposal"


class ConsistencyRunRow(BaseModel):
    """One 整合性確認 started from a terminal: who, when, progress and the summary."""

    run_id = peewee.CharField(max_length=32, primary_key=True)
    operator_id = peewee.CharField(max_length=64)
    terminal_id = peewee.CharField(max_length=64)
    repair = peewee.BooleanField(default=False)
    state = peewee.CharField(max_length=16)  # running / done / failed
    started_at = UtcMicrosField()
    finished_at = UtcMicrosField(null=True)
    done = peewee.IntegerField(default=0)
    total = peewee.IntegerField(default=0)
    description = peewee.CharField(max_length=300, default="")
    error = peewee.CharField(max_length=500, null=True)
    summary = MsgpackField(null=True)

    class Meta:
        table_name = "consistency_run"


TABLES: tuple[type[BaseModel], ...] = (CorrectionRow, ConsistencyRunRow)
register_tables("municipal_cs", *TABLES)


def ensure_tables() -> None:
    """Create the tables in an already initialised CS store (a store made before this module
    was registered gets them when the CS starts; ``safe`` makes it a no-op otherwise)."""
    with translate_errors():
        current_database().create_tables(list(TABLES), safe=True)


# --------------------------------------------------------------------------------------------
# Proposals

_ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _letters(n: int) -> str:
    """Random letters for ids: ids go into usage-log targets, which refuse any 12-digit run (it
    could be a 個人番号), so the random part never adds digits to the date's."""
    return "".join(secrets.choice(_ID_LETTERS) for _ in range(n))


@dataclass(frozen=True, slots=True)
class Proposal:
    proposal_id: str
    resident_code: str
    changes: dict[str, Any]
    before: dict[str, Any]
    note: str
    status: CorrectionStatus
    proposer_id: str
    proposer_terminal: str
    proposed_at: datetime
    decided_by: str | None
    decided_terminal: str | None
    decided_at: datetime | None
    decision_note: str | None


def _proposal(row: CorrectionRow) -> Proposal:
    return Proposal(
        proposal_id=row.proposal_id,
        resident_code=row.resident_code,
        changes=dict(row.changes),
        before=dict(row.before),
        note=row.note,
        status=CorrectionStatus(row.status),
        proposer_id=row.proposer_id,
        proposer_terminal=row.proposer_terminal,
        proposed_at=row.proposed_at,
        decided_by=row.decided_by,
        decided_terminal=row.decided_terminal,
        decided_at=row.decided_at,
        decision_note=row.decision_note,
    )


def propose(
    resident_code: str,
    changes: Mapping[str, Any],
    before: Mapping[str, Any],
    note: str,
    *,
    proposer_id: str,
    proposer_terminal: str,
    now: datetime,
) -> Proposal:
    """Keep a pending correction (the caller has checked the items and formats)."""
    proposal_id = "C" + now.strftime("%Y%m%d") + _letters(8)
    with translate_errors():
        CorrectionRow.insert(
            proposal_id=proposal_id,
            resident_code=resident_code,
            changes=dict(changes),
            before=dict(before),
            note=note,
            status=CorrectionStatus.PENDING.value,
            proposer_id=proposer_id,
            proposer_terminal=proposer_terminal,
            proposed_at=now,
        ).execute()
        return _proposal(CorrectionRow.get(CorrectionRow.proposal_id == proposal_id))


def get_proposal(proposal_id: str) -> Proposal | None:
    with translate_errors():
        row = CorrectionRow.get_or_none(CorrectionRow.proposal_id == proposal_id)
    return None if row is None else _proposal(row)


def list_proposals(
    *,
    status: CorrectionStatus | None = None,
    resident_code: str | None = None,
    limit: int = 200,
) -> list[Proposal]:
    """Newest first."""
    query = CorrectionRow.select().order_by(CorrectionRow.proposed_at.desc()).limit(limit)
    if status is not None:
        query = query.where(CorrectionRow.status == status.value)
    if resident_code is not None:
        query = query.where(CorrectionRow.resident_code == resident_code)
    with translate_errors():
        return [_proposal(r) for r in query]


def decide(
    proposal_id: str,
    outcome: CorrectionStatus,
    *,
    decided_by: str,
    decided_terminal: str,
    note: str | None,
    now: datetime,
) -> Proposal:
    """Approve or reject a pending proposal, once.

    Raises:
        CorrectionError: ``unknown`` proposal or ``decided`` already (by anyone).
    """
    if outcome is CorrectionStatus.PENDING:
        raise ValueError("a decision is approved or rejected")
    with translate_errors():
        n = (
            CorrectionRow.update(
                status=outcome.value,
                decided_by=decided_by,
                decided_terminal=decided_terminal,
                decided_at=now,
                decision_note=note,
            )
            .where(
                (CorrectionRow.proposal_id == proposal_id)
                & (CorrectionRow.status == CorrectionStatus.PENDING.value)
            )
            .execute()
        )
        row = CorrectionRow.get_or_none(CorrectionRow.proposal_id == proposal_id)
    if row is None:
        raise CorrectionError("unknown", f"no correction proposal {proposal_id}")
    if n != 1:
        raise CorrectionError("decided", f"proposal {proposal_id} was already {row.status}")
    return _proposal(row)


# --------------------------------------------------------------------------------------------
# 整合性確認 runs


@dataclass(frozen=True, slots=True)
class ConsistencyRun:
    run_id: str
    operator_id: str
    terminal_id: str
    repair: bool
    state: str
    started_at: datetime
    finished_at: datetime | None
    done: int
    total: int
    description: str
    error: str | None
    summary: dict[str, Any] | None


def _run(row: ConsistencyRunRow) -> ConsistencyRun:
    return ConsistencyRun(
        run_id=row.run_id,
        operator_id=row.operator_id,
        terminal_id=row.terminal_id,
        repair=bool(row.repair),
        state=row.state,
        started_at=row.started_at,
        finished_at=row.finished_at,
        done=int(row.done),
        total=int(row.total),
        description=row.description,
        error=row.error,
        summary=dict(row.summary) if row.summary is not None else None,
    )


def new_run(operator_id: str, terminal_id: str, *, repair: bool, now: datetime) -> ConsistencyRun:
    run_id = "K" + now.strftime("%Y%m%dT%H%M") + _letters(6)
    with translate_errors():
        ConsistencyRunRow.insert(
            run_id=run_id,
            operator_id=operator_id,
            terminal_id=terminal_id,
            repair=repair,
            state="running",
            started_at=now,
        ).execute()
        return _run(ConsistencyRunRow.get(ConsistencyRunRow.run_id == run_id))


def update_run(run_id: str, *, done: int, total: int, description: str) -> None:
    with translate_errors():
        ConsistencyRunRow.update(done=done, total=total, description=description[:300]).where(
            ConsistencyRunRow.run_id == run_id
        ).execute()


def finish_run(
    run_id: str,
    *,
    now: datetime,
    summary: dict[str, Any] | None,
    error: str | None = None,
) -> None:
    with translate_errors():
        ConsistencyRunRow.update(
            state="failed" if error else "done",
            finished_at=now,
            summary=summary,
            error=error[:500] if error else None,
        ).where(ConsistencyRunRow.run_id == run_id).execute()


def running_run() -> ConsistencyRun | None:
    with translate_errors():
        row = (
            ConsistencyRunRow.select()
            .where(ConsistencyRunRow.state == "running")
            .order_by(ConsistencyRunRow.started_at.desc())
            .first()
        )
    return None if row is None else _run(row)


def last_run() -> ConsistencyRun | None:
    with translate_errors():
        row = ConsistencyRunRow.select().order_by(ConsistencyRunRow.started_at.desc()).first()
    return None if row is None else _run(row)


def abandon_running(*, now: datetime) -> int:
    """Runs left 'running' by a CS that stopped: marked failed at start-up."""
    with translate_errors():
        return int(
            ConsistencyRunRow.update(
                state="failed", finished_at=now, error="the CS stopped during the check"
            )
            .where(ConsistencyRunRow.state == "running")
            .execute()
        )


# --------------------------------------------------------------------------------------------
# 送付先情報通知: counts only (§4.10 「送付先情報ファイルに記録される個人情報を用いた統計分析は
# 行わない」) — every figure below is a count of rows, never a field of a record.

JST = timedelta(hours=9)
DESTINATION_TABLE = "destination"


@dataclass(frozen=True, slots=True)
class DestinationCounts:
    days: list[dict[str, Any]]
    """Per JST day, oldest first: received, refused, forwarded, acknowledged, purged."""
    awaiting_ack: int
    awaiting_purge: int
    oldest_sent_at: datetime | None


def _day(at: datetime | float) -> str:
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return (moment.astimezone(UTC) + JST).date().isoformat()


def destination_counts(
    *, since: datetime, notice_type: str, forward_type: str, ack_type: str
) -> DestinationCounts:
    """Counts of 送付先 handling per day since ``since``, from records that outlive the file.

    File (3) itself is deleted a business day after 機構's acknowledgement, so the per-day
    figures come from what is kept: the inbox (notices applied: received, and 機構's
    acknowledgements), the refusal table (received but refused by the CS-7 checks), the
    provision log (forwarded to 機構) and the retention job's usage-log rows (purged, one row
    per batch naming the count). Only the two "awaiting" figures read file (3), and only its
    timestamps.
    """
    from store.auditlog import ProvisionLogRow, UsageLogRow
    from store.journal import Inbox, Refusal
    from store.models import DestinationRow
    from store.retention import PURGE_TASK, PURGE_USER

    floor = since.timestamp()
    days: dict[str, dict[str, int]] = {}

    def bump(day: str, key: str, n: int = 1) -> None:
        row = days.setdefault(
            day,
            {"received": 0, "refused": 0, "forwarded": 0, "acknowledged": 0, "purged": 0},
        )
        row[key] += n

    with translate_errors():
        for (at,) in (
            Inbox.select(Inbox.received_at)
            .where((Inbox.type == notice_type) & (Inbox.received_at >= floor))
            .tuples()
        ):
            bump(_day(at), "received")
        for (at,) in (
            Refusal.select(Refusal.at)
            .where((Refusal.type == notice_type) & (Refusal.at >= floor))
            .tuples()
        ):
            bump(_day(at), "received")
            bump(_day(at), "refused")
        for (at,) in (
            Inbox.select(Inbox.received_at)
            .where((Inbox.type == ack_type) & (Inbox.received_at >= floor))
            .tuples()
        ):
            bump(_day(at), "acknowledged")
        for row in ProvisionLogRow.select(ProvisionLogRow.at).where(
            (ProvisionLogRow.message_type == forward_type)
            & (ProvisionLogRow.result == "provided")
            & (ProvisionLogRow.at >= since)
        ):
            bump(_day(row.at), "forwarded")
        for row in UsageLogRow.select(UsageLogRow.at, UsageLogRow.target).where(
            (UsageLogRow.user_id == PURGE_USER)
            & (UsageLogRow.task == PURGE_TASK)
            & (UsageLogRow.target.startswith(f"{DESTINATION_TABLE}: "))
            & (UsageLogRow.at >= since)
        ):
            match = _PURGED.match(row.target)
            if match:
                bump(_day(row.at), "purged", int(match.group(1)))
        awaiting_ack = DestinationRow.select().where(DestinationRow.sent_at.is_null()).count()
        awaiting_purge = (
            DestinationRow.select().where(DestinationRow.sent_at.is_null(False)).count()
        )
        oldest = DestinationRow.select(peewee.fn.MIN(DestinationRow.sent_at)).scalar()
    return DestinationCounts(
        days=[{"day": d, **days[d]} for d in sorted(days)],
        awaiting_ack=int(awaiting_ack),
        awaiting_purge=int(awaiting_purge),
        oldest_sent_at=(
            oldest
            if isinstance(oldest, datetime) or oldest is None
            else datetime.fromtimestamp(int(oldest) / 1_000_000, UTC)
        ),
    )


_PURGED = re.compile(rf"{DESTINATION_TABLE}: (\d+) rows")
"""store/retention.py's batch row: ``"<table>: <n> rows due before <cutoff>"``."""
