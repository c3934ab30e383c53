"""転出証明書情報 (move-out certificate information) held by the destination CS for 特例転入.

Since 2023 the 転出地 pushes the certificate ahead of the move (住基法24条の2, seed CS-3); the
destination CS keeps it as pending (予定者) until the person's 転入 arrives, then marks it
matched; one that waits longer than the configured period is purged — the row is deleted but the
purge is written to the provision log first, so nothing is lost from the record of what was held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from store.db import translate_errors
from store.models import PendingMoveOutRow


@dataclass(frozen=True, slots=True)
class PendingMoveOut:
    id: int
    resident_code: str
    from_municipality: str
    content: dict[str, Any]
    received_at: datetime
    status: str


def _entry(row: PendingMoveOutRow) -> PendingMoveOut:
    return PendingMoveOut(
        row.id, row.resident_code, row.from_municipality, row.content, row.received_at, row.status
    )


def hold(
    resident_code: str,
    from_municipality: str,
    content: dict[str, Any],
    *,
    now: datetime | None = None,
) -> int:
    """Keep a received certificate as pending; a re-sent one replaces the pending copy."""
    with translate_errors():
        PendingMoveOutRow.delete().where(
            (PendingMoveOutRow.resident_code == resident_code)
            & (PendingMoveOutRow.status == "pending")
        ).execute()
        return int(
            PendingMoveOutRow.insert(
                resident_code=resident_code,
                from_municipality=from_municipality,
                content=content,
                received_at=now or datetime.now(UTC),
                status="pending",
            ).execute()
        )


def pending_for(resident_code: str) -> PendingMoveOut | None:
    with translate_errors():
        row = (
            PendingMoveOutRow.select()
            .where(
                (PendingMoveOutRow.resident_code == resident_code)
                & (PendingMoveOutRow.status == "pending")
            )
            .order_by(PendingMoveOutRow.id.desc())
            .first()
        )
    return None if row is None else _entry(row)


def mark_matched(entry_id: int) -> None:
    with translate_errors():
        PendingMoveOutRow.update(status="matched").where(PendingMoveOutRow.id == entry_id).execute()


def list_pending(limit: int = 10_000) -> list[PendingMoveOut]:
    with translate_errors():
        rows = (
            PendingMoveOutRow.select()
            .where(PendingMoveOutRow.status == "pending")
            .order_by(PendingMoveOutRow.received_at)
            .limit(limit)
        )
        return [_entry(r) for r in rows]
