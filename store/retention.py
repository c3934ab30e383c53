"""保存期間 (retention): the scheduled purge of data whose period has run out (seed-digest §4.3).

One entry point, `purge(role, now=...)`, with the clock injected so that every boundary is
testable. What each node role purges, and from when the period runs:

====================  =============================  =========================================
data                  period                         counted from
====================  =============================  =========================================
履歴 (修正前の本人     150 years (施行令34条3項)       the moment the snapshot was superseded:
確認情報), all three                                 the ``recorded_at`` of a later version of
identity tiers                                       the same 住民票コード, or of the record
                                                     that replaced the code (住民票コード変更)
消除者 (removed        150 years                     the removal: the ``recorded_at`` of the
persons), all three                                  person's newest version (on the CS, the
tiers                                                record's タイムスタンプ when no version was
                                                     kept); the person's history goes too
提供・移転の記録        7 years, refused ones too     ``at``
(provision log)
送付先情報 (file 3)    one business day after        ``sent_at``; unsent records are kept
                       sending
特例転入 pending       `RetentionPolicy.             ``received_at``, only while still
転出証明書情報          pending_move_out_days`        ``pending`` (no 転入 yet)
使用履歴 (usage log)   never (永年)                   —
====================  =============================  =========================================

How "N years" is counted (the 150- and 7-year rules). 民法140条 does not count the first day and
民法143条 ends a period on the day before the corresponding day, or on the last day of the month
when that day does not exist. So a snapshot superseded at any time on JST date D is kept through
the whole of the day before the corresponding day of D+1 in year +N, and is purged from 00:00 JST
of that corresponding day (when D+1 is 29 February and year +N is not a leap year: 1 March).
Example: superseded 2025-04-01 10:00 JST → kept to 2175-04-01 23:59:59 JST, purged from
2175-04-02 00:00 JST. This never purges earlier than the law allows; at most it keeps a day longer
than a naive "timestamp + 150 years".

How "one business day after sending" is counted (「連携後速やか（１営業日後）に削除」). A record
sent at any time on JST date D is deleted from 00:00 JST of the first business day after D
(`store.calendar.add_business_days(D, 1)`): it survives the rest of the sending day and any
closed days, and is gone when the office opens next. Sent on a Friday before a Monday holiday:
deleted from Tuesday 00:00 JST. The cut-off the query uses is 00:00 JST of the latest business day
on or before today (JST): a record sent before that instant has seen a business day begin since.

The 特例転入 period is plain elapsed time: ``received_at + pending_move_out_days`` (appliance.toml
``policy.tokutei_tennyu_purge_days``, 30 by default) ≤ now. The row is kept as a tombstone
(status ``purged``, content emptied) so that a 転入 arriving afterwards can be told the
転出証明書情報 expired rather than never came; the data itself is gone.

Every batch deleted writes a 使用履歴 entry (user ``system:retention``, task ``retention.purge``)
in the same transaction, so the disposal record (seed-digest §5.3, 消去の記録) cannot be lost
while the data is gone; each purged 転出証明書情報 gets its own entry naming the 住民票コード.
Each batch is one transaction; a purge interrupted half-way resumes where it stopped.

Roles: the existing registry purges nothing (its 住民基本台帳 and logs are never deleted,
seed-digest §4.3); card_management holds only the logs, so only provision records go there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import peewee

from store.auditlog import ProvisionLogRow, append_usage
from store.calendar import add_business_days
from store.db import StoreError, current_database, translate_errors
from store.models import (
    BaseModel,
    DestinationRow,
    IdentityHistoryRow,
    IdentityRow,
    NationalIdentityHistoryRow,
    NationalIdentityRow,
    PendingMoveOutRow,
    PrefectureIdentityHistoryRow,
    PrefectureIdentityRow,
    micros_from_datetime,
)
from store.records import ChangeReason, RecordStatus
from store.schema import ROLES

__all__ = [
    "DEFAULT",
    "JST",
    "PURGE_USER",
    "PurgeReport",
    "RetentionPolicy",
    "destination_cutoff",
    "destination_due_at",
    "purge",
    "years_cutoff",
    "years_due_at",
]

JST = ZoneInfo("Asia/Tokyo")
PURGE_USER = "system:retention"
PURGE_TASK = "retention.purge"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The periods; the defaults are the seed's. There is deliberately no field for the usage
    log: 使用履歴 is kept permanently and no policy can change that."""

    history_years: int = 150
    """修正前の本人確認情報 (施行令34条3項)."""
    removed_years: int = 150
    """消除者の本人確認情報."""
    provision_years: int = 7
    """提供・移転の記録, refused ones included."""
    destination_business_days: int = 1
    """送付先情報: business days after sending."""
    pending_move_out_days: int = 30
    """特例転入: days a 転出証明書情報 waits for its 転入 (appliance.toml
    ``policy.tokutei_tennyu_purge_days``)."""
    batch_size: int = 1_000
    """Rows per transaction."""

    def __post_init__(self) -> None:
        for name in (
            "history_years",
            "removed_years",
            "provision_years",
            "destination_business_days",
            "pending_move_out_days",
            "batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"RetentionPolicy.{name} must be at least 1")


DEFAULT = RetentionPolicy()


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one purge run removed: rows per table (every table the role purges is listed)."""

    role: str
    now: datetime
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``juki store purge`` prints it)."""
        return {
            "role": self.role,
            "now": self.now.isoformat(),
            "counts": dict(self.counts),
            "total": self.total,
        }

    def __str__(self) -> str:
        parts = ", ".join(f"{table} {n}" for table, n in self.counts.items()) or "nothing"
        return f"purge {self.role} at {self.now.isoformat()}: {parts} (total {self.total})"


# --- boundaries ------------------------------------------------------------------------------


def _jst_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), JST)


def _jst_date(instant: datetime) -> date:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise StoreError(f"times must be timezone-aware, got naive {instant!r}")
    return instant.astimezone(JST).date()


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February into a common year: the period runs to the month's end
        return date(d.year + years, 3, 1)


def years_due_at(anchor: datetime, years: int) -> datetime:
    """The instant from which data whose period started at `anchor` may be purged."""
    return _jst_midnight(_add_years(_jst_date(anchor) + timedelta(days=1), years))


def years_cutoff(now: datetime, years: int) -> datetime:
    """Data anchored strictly before this instant is due at `now` (the inverse of `years_due_at`).

    The latest period start S whose due day is on or before today (JST) is today's month and day
    `years` earlier (29 February → 28 February in a common year); the anchor day is S - 1.
    """
    today = _jst_date(now)
    try:
        latest_start = today.replace(year=today.year - years)
    except ValueError:
        latest_start = date(today.year - years, 2, 28)
    return _jst_midnight(latest_start)


def destination_due_at(sent_at: datetime, business_days: int = 1) -> datetime:
    """When a 送付先 record sent at `sent_at` is deleted."""
    return _jst_midnight(add_business_days(_jst_date(sent_at), business_days))


def destination_cutoff(now: datetime, business_days: int = 1) -> datetime:
    """Records sent strictly before this instant are due at `now`.

    ``add_business_days(D, n) <= today`` exactly when ``n`` business days lie in (D, today],
    i.e. when D is before the n-th business day counted back from today inclusive.
    """
    today = _jst_date(now)
    return _jst_midnight(add_business_days(today + timedelta(days=1), -business_days))


# --- purge -----------------------------------------------------------------------------------


_IDENTITY_TIERS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "municipal_cs": (IdentityRow, IdentityHistoryRow),
    "prefecture": (PrefectureIdentityRow, PrefectureIdentityHistoryRow),
    "national": (NationalIdentityRow, NationalIdentityHistoryRow),
}
_PROVISION_ROLES = ("municipal_cs", "prefecture", "national", "card_management")


def purge(role: str, *, now: datetime, policy: RetentionPolicy = DEFAULT) -> PurgeReport:
    """Delete what is due at `now` in the bound store of a node of `role`.

    Args:
        role: the node role (decides which tables are purged).
        now: the clock, timezone-aware.
        policy: the periods (the seed's by default).

    Returns:
        Rows removed per table, every table the role purges listed (0 included).
    """
    if role not in ROLES:
        raise StoreError(f"unknown node role {role!r}; expected one of {ROLES}")
    _jst_date(now)  # refuse a naive clock before touching anything
    run = _Run(role, now, policy)
    if role in _IDENTITY_TIERS:
        current, history = _IDENTITY_TIERS[role]
        run.removed_persons(current, history)
        run.superseded_history(current, history)
    if role == "municipal_cs":
        run.destinations()
        run.pending_move_outs()
    if role in _PROVISION_ROLES:
        run.provisions()
    return PurgeReport(role, now, run.counts)


class _Run:
    """One purge run: the shared clock, policy, counts and batch loop."""

    def __init__(self, role: str, now: datetime, policy: RetentionPolicy) -> None:
        self.role = role
        self.now = now
        self.policy = policy
        self.db = current_database()
        self.counts: dict[str, int] = {}

    def _table(self, model: type[BaseModel]) -> str:
        name: str = model._meta.table_name
        self.counts.setdefault(name, 0)
        return name

    def _log(self, target: str, reason: str) -> None:
        append_usage(
            at=self.now,
            user_id=PURGE_USER,
            terminal_id="",
            task=PURGE_TASK,
            reason=reason,
            target=target[:255],
        )

    def _batches(
        self, model: type[BaseModel], select_ids: Any, reason: str, cutoff: datetime
    ) -> None:
        """Delete `select_ids(limit)` until none is left, one transaction and log row per batch."""
        table = self._table(model)
        pk = cast(peewee.Field, model._meta.primary_key)
        while True:
            with translate_errors(), self.db.atomic():
                ids = [row[0] for row in select_ids(self.policy.batch_size).tuples()]
                if not ids:
                    return
                deleted = model.delete().where(pk.in_(ids)).execute()
                self._log(f"{table}: {deleted} rows due before {cutoff.isoformat()}", reason)
            self.counts[table] += deleted

    # 修正前の本人確認情報 -------------------------------------------------------------------

    def superseded_history(self, current: type[BaseModel], history: Any) -> None:
        cutoff = years_cutoff(self.now, self.policy.history_years)
        micros = micros_from_datetime(cutoff)
        reason = f"修正前の本人確認情報: {self.policy.history_years}年経過"

        def superseded_within_code(limit: int) -> peewee.Query:
            # Due when *some* later version was recorded before the cut-off. With recorded_at
            # rising by version this is "the next version", and unlike a join on history_no + 1
            # it survives the deletion of that next version in an earlier batch.
            later = history.alias("later")
            return (
                history.select(history.id)
                .where(
                    peewee.fn.EXISTS(
                        later.select(peewee.SQL("1")).where(
                            (later.resident_code == history.resident_code)
                            & (later.history_no > history.history_no)
                            & (later.recorded_at < micros)
                        )
                    )
                )
                .order_by(history.id)
                .limit(limit)
            )

        def superseded_by_code_change(limit: int) -> peewee.Query:
            # The newest version under an old 住民票コード was superseded by the record that
            # took the new code (its old_resident_code names this one).
            later = history.alias("later")
            changed = history.alias("changed")
            alive = current.alias("alive")
            return (
                history.select(history.id)
                .where(
                    ~peewee.fn.EXISTS(
                        later.select(peewee.SQL("1")).where(
                            (later.resident_code == history.resident_code)
                            & (later.history_no > history.history_no)
                        )
                    ),
                    ~peewee.fn.EXISTS(
                        alive.select(peewee.SQL("1")).where(
                            alive.resident_code == history.resident_code
                        )
                    ),
                    peewee.fn.EXISTS(
                        changed.select(peewee.SQL("1")).where(
                            (changed.old_resident_code == history.resident_code)
                            & (changed.resident_code != history.resident_code)
                            & (changed.change_reason == ChangeReason.RESIDENT_CODE_CHANGE)
                            & (changed.recorded_at < micros)
                        )
                    ),
                )
                .order_by(history.id)
                .limit(limit)
            )

        self._batches(history, superseded_within_code, reason, cutoff)
        self._batches(history, superseded_by_code_change, reason, cutoff)

    # 消除者 ----------------------------------------------------------------------------------

    def removed_persons(self, current: Any, history: Any) -> None:
        cutoff = years_cutoff(self.now, self.policy.removed_years)
        micros = micros_from_datetime(cutoff)
        reason = f"消除者の本人確認情報: {self.policy.removed_years}年経過"
        current_table = self._table(current)
        history_table = self._table(history)
        newest = (
            history.select(
                history.resident_code, peewee.fn.MAX(history.recorded_at).alias("last_at")
            )
            .group_by(history.resident_code)
            .alias("newest")
        )
        if "timestamp" in current._meta.fields:
            # The CS record carries タイムスタンプ: the removal time even without history.
            removed_at = peewee.fn.COALESCE(newest.c.last_at, current.timestamp)
            join_type = peewee.JOIN.LEFT_OUTER
        else:
            # A provided copy without any version has no known removal time: kept.
            removed_at = newest.c.last_at
            join_type = peewee.JOIN.INNER
        while True:
            with translate_errors(), self.db.atomic():
                codes = [
                    row[0]
                    for row in current.select(current.resident_code)
                    .join(newest, join_type, on=(newest.c.resident_code == current.resident_code))
                    .where((current.record_status == RecordStatus.REMOVED) & (removed_at < micros))
                    .order_by(current.resident_code)
                    .limit(self.policy.batch_size)
                    .tuples()
                ]
                if not codes:
                    return
                persons = current.delete().where(current.resident_code.in_(codes)).execute()
                versions = history.delete().where(history.resident_code.in_(codes)).execute()
                self._log(
                    f"{current_table}: {persons} removed persons ({versions} versions) "
                    f"removed before {cutoff.isoformat()}",
                    reason,
                )
            self.counts[current_table] += persons
            self.counts[history_table] += versions

    # 送付先情報 ------------------------------------------------------------------------------

    def destinations(self) -> None:
        days = self.policy.destination_business_days
        cutoff = destination_cutoff(self.now, days)

        def sent(limit: int) -> peewee.Query:
            return (
                DestinationRow.select(DestinationRow.id)
                .where(DestinationRow.sent_at.is_null(False) & (DestinationRow.sent_at < cutoff))
                .order_by(DestinationRow.id)
                .limit(limit)
            )

        self._batches(DestinationRow, sent, f"送付先情報: 送付後{days}営業日経過", cutoff)

    # 特例転入: 転出証明書情報 -------------------------------------------------------------------

    def pending_move_outs(self) -> None:
        table = self._table(PendingMoveOutRow)
        days = self.policy.pending_move_out_days
        cutoff = self.now - timedelta(days=days)
        reason = f"特例転入: 転入なく{days}日経過した転出証明書情報を消去"
        while True:
            with translate_errors(), self.db.atomic():
                due: Any = (
                    PendingMoveOutRow.select(PendingMoveOutRow.id, PendingMoveOutRow.resident_code)
                    .where(
                        (PendingMoveOutRow.status == "pending")
                        & (PendingMoveOutRow.received_at <= cutoff)
                    )
                    .order_by(PendingMoveOutRow.id)
                    .limit(self.policy.batch_size)
                    .tuples()
                )
                rows = [(int(row_id), str(code)) for row_id, code in due]
                if not rows:
                    return
                PendingMoveOutRow.update(status="purged", content={}).where(
                    PendingMoveOutRow.id.in_([row_id for row_id, _ in rows])
                ).execute()
                for _, code in rows:
                    self._log(code, reason)
            self.counts[table] += len(rows)

    # 提供・移転の記録 -------------------------------------------------------------------------

    def provisions(self) -> None:
        cutoff = years_cutoff(self.now, self.policy.provision_years)

        def old(limit: int) -> peewee.Query:
            return (
                ProvisionLogRow.select(ProvisionLogRow.id)
                .where(ProvisionLogRow.at < cutoff)
                .order_by(ProvisionLogRow.id)
                .limit(limit)
            )

        self._batches(
            ProvisionLogRow, old, f"提供・移転の記録: {self.policy.provision_years}年経過", cutoff
        )
