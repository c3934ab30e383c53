"""住民基本台帳 (the existing registry's simplified register, file (1)).

The existing system (既存住基システム) is the master: residents are born, move and die here first,
and every change leaves as a CS-1 update carrying a 更新順番号. This module keeps what the
emulated registry needs: each person's current record (as the registry would send it), a
per-registry sequence counter, and the pool of 住民票コード that 機構 designated to the
municipality in advance, from which births and first entries take their code.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import peewee

from store.db import current_database, is_sqlite, translate_errors
from store.models import EPOCH, BaseModel, MsgpackField, UtcMicrosField
from store.schema import register_tables


class RegisterRow(BaseModel):
    """One person in the register; ``record`` is store.records.record_to_dict of the 40 items."""

    resident_code = peewee.CharField(max_length=11, primary_key=True)
    status = peewee.CharField(max_length=8, index=True)  # current / removed / moved_out
    household = peewee.CharField(max_length=16, index=True)
    record = MsgpackField()
    updated_at = UtcMicrosField()

    class Meta:
        table_name = "register_person"


class RegisterCounter(BaseModel):
    """The registry's 更新順番号 counter (one row): monotonic, so per-person order holds."""

    name = peewee.CharField(max_length=32, primary_key=True)
    value = peewee.BigIntegerField()

    class Meta:
        table_name = "register_counter"


class CodePoolRow(BaseModel):
    """住民票コード designated to this municipality by 機構, not yet given to anyone."""

    code = peewee.CharField(max_length=11, primary_key=True)
    used = peewee.BooleanField(default=False, index=True)

    class Meta:
        table_name = "register_code_pool"


register_tables("existing_registry", RegisterRow, RegisterCounter, CodePoolRow)


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    resident_code: str
    status: str
    household: str
    record: dict[str, Any]


def get(code: str) -> RegisterEntry | None:
    # raw SQL: the simulator and the feed call this once per 異動, thousands of times a second
    db = current_database()
    with translate_errors():
        row = db.execute_sql(
            f'SELECT "resident_code", "status", "household", "record" FROM "register_person" '
            f'WHERE "resident_code" = {db.param}',
            (code,),
        ).fetchone()
    if row is None:
        return None
    return RegisterEntry(row[0], row[1], row[2], msgpack.unpackb(bytes(row[3]), raw=False))


def put(
    code: str, record: dict[str, Any], status: str, household: str, *, now: datetime | None = None
) -> None:
    db = current_database()
    at = now or datetime.now(UTC)
    micros = (at - EPOCH) // timedelta(microseconds=1)
    p = db.param
    with translate_errors():
        db.execute_sql(
            f'INSERT INTO "register_person" ("resident_code", "status", "household", "record", '
            f'"updated_at") VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT ("resident_code") DO '
            'UPDATE SET "status" = EXCLUDED."status", "household" = EXCLUDED."household", '
            '"record" = EXCLUDED."record", "updated_at" = EXCLUDED."updated_at"',
            (code, status, household, msgpack.packb(record, use_bin_type=True), micros),
        )


def rekey(old_code: str, new_code: str) -> None:
    """住民票コード変更: the person keeps their register row under the new code."""
    with translate_errors():
        RegisterRow.update(resident_code=new_code).where(
            RegisterRow.resident_code == old_code
        ).execute()


def bulk_put(entries: Iterable[RegisterEntry], *, now: datetime | None = None) -> int:
    at = now or datetime.now(UTC)
    rows = [
        {
            "resident_code": e.resident_code,
            "status": e.status,
            "household": e.household,
            "record": e.record,
            "updated_at": at,
        }
        for e in entries
    ]
    with translate_errors():
        for start in range(0, len(rows), 500):
            RegisterRow.insert_many(rows[start : start + 500]).execute()
    return len(rows)


def next_sequence(count: int = 1) -> int:
    """Reserve `count` 更新順番号 and return the first (inside the caller's transaction)."""
    db = current_database()
    p = db.param
    with translate_errors():
        row = db.execute_sql(
            f'SELECT "value" FROM "register_counter" WHERE "name" = {p}', ("sequence",)
        ).fetchone()
        if row is None:
            RegisterCounter.insert(name="sequence", value=count).execute()
            return 1
        db.execute_sql(
            f'UPDATE "register_counter" SET "value" = "value" + {p} WHERE "name" = {p}',
            (count, "sequence"),
        )
        return int(row[0]) + 1


def set_sequence_floor(value: int) -> None:
    """After a bulk load, make sure new 更新順番号 are above every loaded one."""
    with translate_errors():
        row = RegisterCounter.get_or_none(RegisterCounter.name == "sequence")
        if row is None:
            RegisterCounter.insert(name="sequence", value=value).execute()
        elif row.value < value:
            RegisterCounter.update(value=value).where(RegisterCounter.name == "sequence").execute()


def add_codes(codes: Iterable[str]) -> int:
    rows = [{"code": c, "used": False} for c in codes]
    with translate_errors():
        for start in range(0, len(rows), 500):
            CodePoolRow.insert_many(rows[start : start + 500]).on_conflict_ignore().execute()
    return len(rows)


def take_code() -> str:
    """The next unused designated 住民票コード (inside the caller's transaction)."""
    with translate_errors():
        row = CodePoolRow.select().where(~CodePoolRow.used).order_by(CodePoolRow.code).first()
        if row is None:
            raise LookupError("the municipality's pool of designated 住民票コード is empty")
        CodePoolRow.update(used=True).where(CodePoolRow.code == row.code).execute()
    return str(row.code)


def codes_left() -> int:
    with translate_errors():
        return int(CodePoolRow.select().where(~CodePoolRow.used).count())


def sample_current(rng: random.Random, n: int = 1) -> list[RegisterEntry]:
    """Current residents chosen at random (the simulator's next actors).

    住民票コード are uniformly random digits, so "the first current resident at or after a random
    code" is a near-uniform draw that the primary key answers in O(log n) — unlike OFFSET, which
    walks the table.
    """
    db = current_database()
    p = db.param
    # "+" keeps SQLite on the primary key: with the status index it would sort every current row
    status = '+"status"' if is_sqlite(db) else '"status"'
    sql = (
        f'SELECT "resident_code", "status", "household", "record" FROM "register_person" '
        f'WHERE "resident_code" >= {p} AND {status} = {p} ORDER BY "resident_code" LIMIT 1'
    )
    out: list[RegisterEntry] = []
    with translate_errors():
        for _ in range(n):
            start = f"{rng.randrange(10**11):011d}"
            row = (
                db.execute_sql(sql, (start, "current")).fetchone()
                or db.execute_sql(sql, ("", "current")).fetchone()
            )
            if row is None:
                return out
            record = msgpack.unpackb(bytes(row[3]), raw=False)
            out.append(RegisterEntry(row[0], row[1], row[2], record))
    return out


def count(status: str | None = None) -> int:
    with translate_errors():
        q = RegisterRow.select()
        if status:
            q = q.where(RegisterRow.status == status)
        return int(q.count())


def iter_entries(status: str | None = None) -> Iterator[RegisterEntry]:
    with translate_errors():
        q = RegisterRow.select().order_by(RegisterRow.resident_code)
        if status:
            q = q.where(RegisterRow.status == status)
        for row in q.iterator():
            yield RegisterEntry(row.resident_code, row.status, row.household, row.record)


class RegisterRefusalRow(BaseModel):
    """An update or number request the CS refused, with the rules it broke (for the registry's
    operators to correct and resend)."""

    request_number = peewee.CharField(max_length=64, index=True)
    resident_code = peewee.CharField(max_length=11, index=True)
    kind = peewee.CharField(max_length=16)  # update / number
    violations = MsgpackField()
    received_at = UtcMicrosField()

    class Meta:
        table_name = "register_refusal"


register_tables("existing_registry", RegisterRefusalRow)


def record_refusal(
    request_number: str, resident_code: str, kind: str, violations: list[dict[str, Any]]
) -> None:
    with translate_errors():
        RegisterRefusalRow.insert(
            request_number=request_number,
            resident_code=resident_code,
            kind=kind,
            violations=violations,
            received_at=datetime.now(UTC),
        ).execute()


def refusals(limit: int = 100) -> list[dict[str, Any]]:
    with translate_errors():
        q = RegisterRefusalRow.select().order_by(RegisterRefusalRow.id.desc()).limit(limit)
        return [
            {
                "request_number": r.request_number,
                "resident_code": r.resident_code,
                "kind": r.kind,
                "violations": r.violations,
            }
            for r in q
        ]


def refusal_count(resident_code: str, kind: str) -> int:
    """How many times the CS refused this kind of request for the person."""
    with translate_errors():
        return int(
            RegisterRefusalRow.select()
            .where(
                (RegisterRefusalRow.resident_code == resident_code)
                & (RegisterRefusalRow.kind == kind)
            )
            .count()
        )
