"""人口の投入 (seeding a population): the same synthetic residents in every tier at once.

``juki seed --municipality 041009 --residents N`` generates N residents with
store.population and loads them, consistently, into:

1. the municipality's existing registry (住民基本台帳: one register row per person, the pool of
   住民票コード designated in advance, and the 更新順番号 counter above every loaded number);
2. its 市町村CS (本人確認情報, file (2): the 40-item records);
3. its prefecture's server and national's server (the provided copies, §3.4);
4. national's number management: every 個人番号 as issued and every 住民票コード as assigned
   (the designated pool as offered), so national never hands any of them out again.

Only one store can be bound per process (store.db.database_proxy), so the stores are loaded one
after the other. There is no transaction across stores: seeding refuses up front when any of
them already holds residents of the municipality, and a half-finished seed (a crash between
stores) is cleared by deleting the stores, not by seeding again.

The same seed gives the same people in every store, and the same people on every machine given
the same prior state (codes and numbers already at national are avoided, so a second
municipality seeded into the same appliance cannot collide with the first).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from juki.config import ApplianceConfig, ConfigError
from nodes.stores import open_node_store
from store import identity, register  # register: its tables exist before its store opens
from store.db import is_postgresql, translate_errors
from store.models import (
    IssuedNumberRow,
    NationalIdentityRow,
    PrefectureIdentityRow,
    ResidentCodeRow,
    micros_from_datetime,
)
from store.population import MUNICIPALITIES, Person, designated_codes, generate
from store.records import provided_from, record_to_dict

__all__ = ["DESIGNATED_POOL", "AlreadySeeded", "SeedReport", "seed_population"]

DESIGNATED_POOL = 10_000
"""住民票コード designated to the municipality in advance, for births and first entries."""

_BATCH = 20_000

T = TypeVar("T")


class AlreadySeeded(Exception):
    """A store of the municipality already holds residents; seeding would duplicate them."""

    title = "投入済み"


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What one seed loaded (for the CLI's summary and the tests)."""

    municipality: str
    residents: int
    current: int
    removed: int
    households: int
    designated_codes: int
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Targets:
    registry: str
    cs: str
    prefecture: str
    national: str


def _targets(config: ApplianceConfig, municipality: str) -> _Targets:
    if municipality not in config.municipalities:
        known = ", ".join(sorted(config.municipalities))
        raise ConfigError(f"{config.path}: no municipality {municipality} (known: {known})")
    if municipality not in MUNICIPALITIES:
        raise ConfigError(
            f"no synthetic address data for municipality {municipality} "
            f"(have: {', '.join(sorted(MUNICIPALITIES))})"
        )
    registries = [
        n.id for n in config.nodes_with_role("existing_registry") if n.municipality == municipality
    ]
    if len(registries) != 1:
        raise ConfigError(
            f"{config.path}: expected one existing_registry for {municipality}, "
            f"found {len(registries)}"
        )
    return _Targets(
        registry=registries[0],
        cs=config.cs_for_municipality(municipality),
        prefecture=config.prefecture_node(config.municipalities[municipality].prefecture),
        national=config.single("national"),
    )


def seed_population(
    config: ApplianceConfig,
    municipality: str,
    n: int,
    *,
    seed: int = 1,
    progress: bool = True,
) -> SeedReport:
    """Generate `n` residents of `municipality` and load them into every tier.

    Raises:
        ConfigError: the municipality (or one of its nodes) is not in the appliance, or there is
            no address data for it.
        AlreadySeeded: the registry, CS, prefecture or national already holds residents of the
            municipality (nothing is written then).
    """
    if n < 1:
        raise ConfigError("--residents must be at least 1")
    targets = _targets(config, municipality)
    with _Progress(progress) as bar:
        used_codes, used_numbers = _check_empty(config, targets, municipality)
        people = bar.collect(
            "生成 generate", n, generate(
                municipality, n, seed=seed, exclude_codes=used_codes, exclude_numbers=used_numbers
            ),
        )  # fmt: skip
        pool = designated_codes(
            municipality,
            DESIGNATED_POOL,
            seed=seed,
            exclude=used_codes | {p.record.resident_code for p in people},
        )
        del used_codes, used_numbers
        _load_registry(config, targets.registry, people, pool, bar)
        _load_cs(config, targets.cs, people, bar)
        _load_provided(config, targets.prefecture, "prefecture", people, bar)
        _load_provided(config, targets.national, "national", people, bar)
        _load_number_management(config, targets.national, municipality, people, pool, bar)
    current = sum(1 for p in people if p.record.is_current)
    return SeedReport(
        municipality=municipality,
        residents=len(people),
        current=current,
        removed=len(people) - current,
        households=len({p.household for p in people}),
        designated_codes=len(pool),
        nodes=(targets.registry, targets.cs, targets.prefecture, targets.national),
    )


# --- the stages -----------------------------------------------------------------------------


def _check_empty(
    config: ApplianceConfig, targets: _Targets, municipality: str
) -> tuple[set[str], set[str]]:
    """Refuse when any tier holds the municipality's residents; national's codes and numbers.

    Runs before anything is written, so a refused seed leaves every store as it was.
    """
    found: list[str] = []
    with _store(config, targets.registry):
        if register.count() > 0:
            found.append(targets.registry)
    with _store(config, targets.cs):
        if identity.count_identities(municipality) > 0:
            found.append(targets.cs)
    with _store(config, targets.prefecture):
        if _count_provided(PrefectureIdentityRow, municipality) > 0:
            found.append(targets.prefecture)
    with _store(config, targets.national):
        if _count_provided(NationalIdentityRow, municipality) > 0:
            found.append(targets.national)
        codes, numbers = _national_in_use()
    if found:
        raise AlreadySeeded(
            f"municipality {municipality} already has residents in {', '.join(found)}; "
            "seeding again would duplicate them (delete those stores to start over)"
        )
    return codes, numbers


def _load_registry(
    config: ApplianceConfig,
    node_id: str,
    people: list[Person],
    pool: list[str],
    bar: _Progress,
) -> None:
    with _store(config, node_id) as db, translate_errors(), db.atomic():
        at = datetime.now(UTC)
        for chunk in bar.chunks(f"{node_id} 住民基本台帳", people):
            register.bulk_put(
                (
                    register.RegisterEntry(
                        p.record.resident_code,
                        p.register_status,
                        p.household,
                        record_to_dict(p.record),
                    )
                    for p in chunk
                ),
                now=at,
            )
        register.add_codes(pool)
        register.set_sequence_floor(max(p.record.sequence for p in people))


def _load_cs(config: ApplianceConfig, node_id: str, people: list[Person], bar: _Progress) -> None:
    with _store(config, node_id):
        identity.bulk_load_identities(
            bar.track(f"{node_id} 本人確認情報", len(people), (p.record for p in people)),
            batch=_BATCH,
        )


def _load_provided(
    config: ApplianceConfig, node_id: str, tier: str, people: list[Person], bar: _Progress
) -> None:
    with _store(config, node_id):
        records = (provided_from(p.record) for p in people)
        identity.bulk_load_provided(
            tier,  # type: ignore[arg-type]
            bar.track(f"{node_id} 本人確認情報", len(people), records),
            batch=_BATCH,
        )


def _load_number_management(
    config: ApplianceConfig,
    node_id: str,
    municipality: str,
    people: list[Person],
    pool: list[str],
    bar: _Progress,
) -> None:
    """National's IssuedNumberRow and ResidentCodeRow, so nothing loaded is ever re-issued."""
    at = micros_from_datetime(datetime.now(UTC))
    numbers = [
        (p.record.individual_number, p.record.resident_code, at)
        for p in people
        if p.record.individual_number is not None
    ]
    codes = [(p.record.resident_code, "assigned", municipality, at) for p in people]
    codes += [(code, "offered", municipality, at) for code in pool]
    with _store(config, node_id) as db, translate_errors(), db.atomic():
        cursor = db.cursor()
        for table, rows in (
            (IssuedNumberRow, numbers),
            (ResidentCodeRow, codes),
        ):
            columns = [f.column_name for f in table._meta.sorted_fields]
            insert = _insert_sql(db, table._meta.table_name, columns)
            for chunk in bar.chunks(f"{node_id} {table._meta.table_name}", rows):
                _executemany(db, cursor, insert, chunk)


# --- store access the store modules do not offer ----------------------------------------------


def _count_provided(model: Any, municipality: str) -> int:
    with translate_errors():
        return int(model.select().where(model.municipality_code == municipality).count())


def _national_in_use() -> tuple[set[str], set[str]]:
    """Every 住民票コード and 個人番号 national knows, so the new population avoids them."""
    with translate_errors():
        codes = {row[0] for row in ResidentCodeRow.select(ResidentCodeRow.code).tuples()}
        for code, old in NationalIdentityRow.select(
            NationalIdentityRow.resident_code, NationalIdentityRow.old_resident_code
        ).tuples():
            codes.add(code)
            if old:
                codes.add(old)
        numbers = {
            row[0] for row in IssuedNumberRow.select(IssuedNumberRow.individual_number).tuples()
        }
    return codes, numbers


def _insert_sql(db: Any, table: str, columns: list[str]) -> str:
    quoted = ", ".join(f'"{c}"' for c in columns)
    if is_postgresql(db):
        return f'INSERT INTO "{table}" ({quoted}) VALUES %s'
    marks = ", ".join([db.param] * len(columns))
    return f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})'


def _executemany(db: Any, cursor: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    if is_postgresql(db):
        from psycopg2.extras import execute_values  # the driver peewee already uses

        execute_values(cursor, sql, rows, page_size=len(rows))
    else:
        cursor.executemany(sql, rows)


@contextlib.contextmanager
def _store(config: ApplianceConfig, node_id: str) -> Iterator[Any]:
    """Open, bind and initialise one node's store for the duration of the block."""
    db = open_node_store(config, node_id)
    try:
        yield db
    finally:
        db.close()


# --- progress ----------------------------------------------------------------------------------


class _Progress:
    """A rich progress bar per stage, or nothing (``--quiet``, tests)."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _task(self, label: str, total: int) -> Callable[[int], None]:
        if self.bar is None:
            return lambda _n: None
        task = self.bar.add_task(label, total=total)
        return lambda n: self.bar.advance(task, n)

    def track(self, label: str, total: int, items: Iterable[T]) -> Iterator[T]:
        advance = self._task(label, total)
        count = 0
        for item in items:
            yield item
            count += 1
            if count == 10_000:
                advance(count)
                count = 0
        advance(count)

    def collect(self, label: str, total: int, items: Iterable[T]) -> list[T]:
        return list(self.track(label, total, items))

    def chunks(self, label: str, items: list[T]) -> Iterator[list[T]]:
        advance = self._task(label, len(items))
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            yield chunk
            advance(len(chunk))
