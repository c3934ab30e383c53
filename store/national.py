"""機構の番号管理 (J-LIS number management): 個人番号 generation and 住民票コード allocation.

番号法8条: the municipality notifies 機構 of a 住民票コード and 機構 generates the number that is to
be the person's 個人番号. Numbers are random with a valid check digit, unique, and never reused —
every number ever issued stays in ``issued_number`` even after the person dies or the number is
changed. A repeated request for the same 住民票コード (a redelivered notice, a retry) answers the
number already issued rather than spending a new one, unless the request is a 個人番号変更.

住民票コード are allocated the same way: candidates are offered to a CS for a 住民票コード変更
(the seed: 「機構から指定された複数の住民票コードから選択」), and a code offered, assigned or
retired is
never offered again.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import peewee

from store.codes import random_individual_number, random_resident_code
from store.db import translate_errors
from store.models import (
    BaseModel,
    IssuedNumberRow,
    NationalIdentityRow,
    ResidentCodeRow,
    UtcMicrosField,
)
from store.schema import register_tables


class PendingNumberRequestRow(BaseModel):
    """A 個人番号 request that arrived before the person's record did.

    The request travels CS → national directly while the birth notice travels CS → prefecture →
    national, so the request can win the race; national answers it when the record arrives,
    because the answer must carry national's own 4情報 for the CS's V-11 match.
    """

    resident_code = peewee.CharField(max_length=11, index=True)
    request_number = peewee.CharField(max_length=64)
    municipality = peewee.CharField(max_length=6)
    received_at = UtcMicrosField()

    class Meta:
        table_name = "pending_number_request"


register_tables("national", PendingNumberRequestRow)

_MAX_TRIES = 1000


def _now() -> datetime:
    return datetime.now(UTC)


def issued_number_for(resident_code: str) -> str | None:
    """The latest number issued for this 住民票コード, if any."""
    with translate_errors():
        row = (
            IssuedNumberRow.select(IssuedNumberRow.individual_number)
            .where(IssuedNumberRow.resident_code == resident_code)
            .order_by(IssuedNumberRow.issued_at.desc())
            .first()
        )
    return row.individual_number if row else None


def issue_individual_number(
    resident_code: str,
    *,
    rng: random.Random | None = None,
    change: bool = False,
    now: datetime | None = None,
) -> str:
    """Generate (or, for a repeated request, return) the 個人番号 for `resident_code`.

    Must run inside the caller's transaction so that the issued number and the answer notice
    commit together. With ``change=True`` a new number is always generated (個人番号変更).
    """
    if not change:
        existing = issued_number_for(resident_code)
        if existing is not None:
            return existing
    rng = rng or random.SystemRandom()
    with translate_errors():
        for _ in range(_MAX_TRIES):
            candidate = random_individual_number(rng)
            if IssuedNumberRow.get_or_none(IssuedNumberRow.individual_number == candidate) is None:
                IssuedNumberRow.insert(
                    individual_number=candidate,
                    resident_code=resident_code,
                    issued_at=now or _now(),
                ).execute()
                return candidate
    raise RuntimeError("could not find an unused 個人番号 (number space exhausted?)")


def is_number_issued(individual_number: str) -> bool:
    with translate_errors():
        return (
            IssuedNumberRow.get_or_none(IssuedNumberRow.individual_number == individual_number)
            is not None
        )


def offer_resident_codes(
    municipality_code: str,
    count: int,
    *,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Offer `count` fresh 住民票コード to a municipality (recorded so none is offered twice)."""
    rng = rng or random.SystemRandom()
    offered: list[str] = []
    with translate_errors():
        tries = 0
        while len(offered) < count:
            tries += 1
            if tries > _MAX_TRIES * count:
                raise RuntimeError("could not find unused 住民票コード")
            code = random_resident_code(rng)
            if code in offered or ResidentCodeRow.get_or_none(ResidentCodeRow.code == code):
                continue
            if NationalIdentityRow.get_or_none(
                (NationalIdentityRow.resident_code == code)
                | (NationalIdentityRow.old_resident_code == code)
            ):
                continue
            ResidentCodeRow.insert(
                code=code,
                status="offered",
                municipality_code=municipality_code,
                updated_at=now or _now(),
            ).execute()
            offered.append(code)
    return offered


def code_status(code: str) -> str | None:
    with translate_errors():
        row = ResidentCodeRow.get_or_none(ResidentCodeRow.code == code)
    return row.status if row else None


def mark_code(code: str, status: str, *, now: datetime | None = None) -> None:
    """Record a code as assigned (it is in use) or retired (replaced by a 住民票コード変更)."""
    if status not in ("offered", "assigned", "retired"):
        raise ValueError(status)
    with translate_errors():
        (
            ResidentCodeRow.insert(
                code=code, status=status, municipality_code=None, updated_at=now or _now()
            )
            .on_conflict(
                conflict_target=[ResidentCodeRow.code],
                update={ResidentCodeRow.status: status, ResidentCodeRow.updated_at: now or _now()},
            )
            .execute()
        )


__all__ = [
    "code_status",
    "is_number_issued",
    "issue_individual_number",
    "issued_number_for",
    "mark_code",
    "offer_resident_codes",
]


def defer_number_request(resident_code: str, request_number: str, municipality: str) -> None:
    with translate_errors():
        PendingNumberRequestRow.insert(
            resident_code=resident_code,
            request_number=request_number,
            municipality=municipality,
            received_at=_now(),
        ).execute()


def take_deferred_requests(resident_code: str) -> list[tuple[str, str]]:
    """(request_number, municipality) of requests waiting for this person; removes them."""
    with translate_errors():
        rows = list(
            PendingNumberRequestRow.select().where(
                PendingNumberRequestRow.resident_code == resident_code
            )
        )
        if rows:
            PendingNumberRequestRow.delete().where(
                PendingNumberRequestRow.resident_code == resident_code
            ).execute()
    return [(r.request_number, r.municipality) for r in rows]
