"""更新順序 (update order, V-13): which of two versions of a person's provided record wins.

The prefecture and national apply CS notices per person in 更新順番号 order. 更新順番号 are
assigned by each municipality's existing system, so they only compare within one municipality;
when a person moves between municipalities the two cities' notices travel by different paths
(even through different prefectures) and may arrive in either order. The rule, in order:

1. nothing on file → apply;
2. same municipality → apply only a higher 更新順番号 (equal or lower is a duplicate or stale);
3. different municipalities → a 現存 (current) record beats a 消除 (removed) one, so the old
   city's 転出 arriving after the new city's 転入 cannot remove a living resident; between two
   of the same status the later 異動年月日 wins, then the later arrival.

A stale version is still kept as history by the caller when it is new to the tier.
"""

from __future__ import annotations

from datetime import datetime

from store.records import ProvidedIdentity, RecordStatus


def supersedes(existing: ProvidedIdentity | None, incoming: ProvidedIdentity) -> bool:
    """True when `incoming` should replace `existing` as the tier's current version."""
    if existing is None:
        return True
    if existing.municipality_code == incoming.municipality_code:
        return incoming.sequence > existing.sequence
    existing_current = existing.record_status is RecordStatus.CURRENT
    incoming_current = incoming.record_status is RecordStatus.CURRENT
    if existing_current != incoming_current:
        return incoming_current
    return incoming.change_date >= existing.change_date


def is_duplicate(existing: ProvidedIdentity | None, incoming: ProvidedIdentity) -> bool:
    """The very same version again (a redelivered or re-sent notice)."""
    return (
        existing is not None
        and existing.municipality_code == incoming.municipality_code
        and existing.sequence == incoming.sequence
    )


def keep_as_history(tier: str, provided: ProvidedIdentity, recorded_at: datetime) -> int:
    """Record a stale version in the tier's history without touching its current row, so that
    every notice the tier accepted is in its history exactly once, in arrival order."""
    from store.db import current_database, translate_errors
    from store.identity import _append_history, _tier

    codec = _tier(tier)
    db = current_database()
    with translate_errors(), db.atomic():
        return _append_history(codec, codec.to_row_dict(provided), recorded_at)
