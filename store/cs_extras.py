"""市町村CSの補助表 (CS side tables): 住民票コード candidates offered for a change, and the
counts-only statistics the seed allows (T-20: 「本人確認情報の更新件数の集計等…のみ」)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import peewee

from store.db import translate_errors
from store.models import BaseModel, IdentityHistoryRow, UtcMicrosField
from store.schema import register_tables


class CodeOfferRow(BaseModel):
    """Candidate 住民票コード that 機構 offered for one resident's 住民票コード変更."""

    resident_code = peewee.CharField(max_length=11, index=True)
    code = peewee.CharField(max_length=11, unique=True)
    offered_at = UtcMicrosField()
    used = peewee.BooleanField(default=False)

    class Meta:
        table_name = "code_offer"


register_tables("municipal_cs", CodeOfferRow)


def remember_offers(resident_code: str, codes: list[str], *, now: datetime | None = None) -> None:
    at = now or datetime.now(UTC)
    with translate_errors():
        CodeOfferRow.insert_many(
            [{"resident_code": resident_code, "code": c, "offered_at": at} for c in codes]
        ).on_conflict_ignore().execute()


def take_offer(resident_code: str, code: str) -> bool:
    """True (and the offer is spent) when `code` was offered for this resident and not used."""
    with translate_errors():
        n = (
            CodeOfferRow.update(used=True)
            .where(
                (CodeOfferRow.resident_code == resident_code)
                & (CodeOfferRow.code == code)
                & (~CodeOfferRow.used)
            )
            .execute()
        )
    return n == 1


def update_counts(since: date | None = None) -> list[tuple[date, str, int]]:
    """(異動年月日, 異動事由, count) over the history: counts only, never per person."""
    h = IdentityHistoryRow
    q = h.select(h.change_date, h.change_reason, peewee.fn.COUNT(h.id)).group_by(
        h.change_date, h.change_reason
    )
    if since is not None:
        q = q.where(h.change_date >= since)
    with translate_errors():
        rows = list(q.order_by(h.change_date, h.change_reason).tuples())
    out = []
    for day, reason, n in rows:
        d = day if isinstance(day, date) else date.fromisoformat(str(day))
        out.append((d, str(getattr(reason, "value", reason)), int(n)))
    return out
