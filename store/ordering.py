"""更新順序 (update order, V-13): which of two versions of a person's provided record wins.

The prefecture and national apply CS notices per person in 更新順番号 order. 更新順番号 are
assigned by each municipality's existing system, so they only compare within one municipality;
when a person moves between municipalities the two cities' notices travel by different paths
(even through different prefectures) and may arrive in either order. The rule, in order:

1. nothing on file → apply;
2. same municipality → apply only a higher 更新順番号 (equal or lower is a duplicate or stale);
3. different municipalities → the residence that began by moving in from the other city is
   the later one (市町村コード（転入前）), so the old city's 転居 or 転出 arriving after the new
   city's 転入 cannot overwrite a living resident; failing that (a return to an earlier city, or
   unrelated cities) the later 住民となった日, then a 現存 record over a 消除 one, then the later
   異動年月日, then the later arrival.

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
    # Different cities. A residence that began by moving in from the other city is the later
    # one (the old city's 転居 or 転出 may still be on its way).
    came_from_existing = incoming.previous_municipality_code == existing.municipality_code
    came_from_incoming = existing.previous_municipality_code == incoming.municipality_code
    if came_from_existing != came_from_incoming:
        return came_from_existing
    # Otherwise (unrelated cities, or a return to an earlier city): the later residence wins,
    # then a current record over a removed one, then the later 異動年月日.
    a, b = existing.became_resident_on, incoming.became_resident_on
    if a is not None and b is not None and a != b:
        return b > a
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
    from store.identity import _tier, append_history

    return append_history(_tier(tier), provided, recorded_at)
