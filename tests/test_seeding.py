"""juki seed: one generated population, identical in the registry, CS, prefecture and national;
national's number management knows every code and number; a second seed is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from juki.config import ApplianceConfig, ConfigError, load
from nodes.seeding import DESIGNATED_POOL, AlreadySeeded, seed_population
from nodes.stores import open_node_store
from store import identity, national, register
from store.population import designated_codes, generate
from store.records import ProvidedIdentity, provided_from, record_from_dict

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

N = 300


def _write_config(tmp_path: Path, national_store: str | None = None) -> ApplianceConfig:
    store_line = f'store = "{national_store}"\n' if national_store else ""
    text = f"""
[appliance]
var_dir = "{tmp_path / "var"}"
keys_dir = "{tmp_path / "keys"}"
trust_file = "{tmp_path / "keys" / "trust.json"}"

[[prefectures]]
code = "04"
name = "宮城県"

[[municipalities]]
code = "041009"
name = "仙台市"
prefecture = "04"

[[municipalities]]
code = "042021"
name = "石巻市"
prefecture = "04"

[[nodes]]
id = "national"
role = "national"
{store_line}
[[nodes]]
id = "pref.04"
role = "prefecture"
prefecture = "04"

[[nodes]]
id = "cs.041009"
role = "municipal_cs"
municipality = "041009"

[[nodes]]
id = "registry.041009"
role = "existing_registry"
municipality = "041009"

[[nodes]]
id = "cs.042021"
role = "municipal_cs"
municipality = "042021"

[[nodes]]
id = "registry.042021"
role = "existing_registry"
municipality = "042021"
"""
    path = tmp_path / "appliance.toml"
    path.write_text(text, encoding="utf-8")
    return load(path)


def _provided_everywhere(config: ApplianceConfig, municipality: str) -> dict[str, list[object]]:
    """Each tier's view of the municipality's people, as ProvidedIdentity, by 住民票コード."""
    views: dict[str, list[object]] = {}
    db = open_node_store(config, f"registry.{municipality}")
    entries = sorted(register.iter_entries(), key=lambda e: e.resident_code)
    views["registry"] = [provided_from(record_from_dict(e.record)) for e in entries]
    db.close()
    codes = [e.resident_code for e in entries]
    db = open_node_store(config, f"cs.{municipality}")
    cs = {r.resident_code: r for r in identity.iter_identities(municipality)}
    views["cs"] = [provided_from(cs[c]) for c in codes]
    db.close()
    for node, tier in (("pref.04", "prefecture"), ("national", "national")):
        db = open_node_store(config, node)
        views[tier] = [identity.get_provided(tier, c) for c in codes]  # type: ignore[arg-type]
        db.close()
    return views


def _check_seeded(config: ApplianceConfig, municipality: str, seed: int) -> None:
    expected = sorted(
        (p for p in generate(municipality, N, seed=seed)), key=lambda p: p.record.resident_code
    )
    # A municipality seeded after another avoids the codes national already holds, so its
    # people equal a fresh generate() only when it is the first.
    views = _provided_everywhere(config, municipality)
    assert views["registry"] == views["cs"] == views["prefecture"] == views["national"]
    assert all(isinstance(v, ProvidedIdentity) for v in views["national"])
    assert len(views["cs"]) == N
    if municipality == "041009":
        assert views["cs"] == [provided_from(p.record) for p in expected]

    db = open_node_store(config, f"registry.{municipality}")
    entries = {e.resident_code: e for e in register.iter_entries()}
    assert register.codes_left() == DESIGNATED_POOL
    first = register.next_sequence()
    db.close()
    db = open_node_store(config, f"cs.{municipality}")
    records = list(identity.iter_identities(municipality))
    db.close()
    assert first > max(r.sequence for r in records)
    for r in records:
        entry = entries[r.resident_code]
        assert record_from_dict(entry.record) == r
        assert (entry.status == "current") == r.is_current
        assert entry.status in ("current", "moved_out", "removed")
        assert entry.household.startswith(municipality)

    db = open_node_store(config, "national")
    for r in records:
        assert national.code_status(r.resident_code) == "assigned"
        if r.individual_number is not None:
            assert national.is_number_issued(r.individual_number)
            assert national.issued_number_for(r.resident_code) == r.individual_number
    db.close()


def test_seed_is_identical_in_every_tier_and_refuses_a_second_time(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    report = seed_population(config, "041009", N, seed=3, progress=False)
    assert report.residents == N
    assert report.current + report.removed == N
    assert report.nodes == ("registry.041009", "cs.041009", "pref.04", "national")
    _check_seeded(config, "041009", seed=3)

    # the designated pool is offered at national, disjoint from the people's codes
    pool = designated_codes(
        "041009",
        DESIGNATED_POOL,
        seed=3,
        exclude={p.record.resident_code for p in generate("041009", N, seed=3)},
    )
    db = open_node_store(config, "national")
    assert {national.code_status(c) for c in pool[:200]} == {"offered"}
    db.close()

    with pytest.raises(AlreadySeeded, match="already has residents"):
        seed_population(config, "041009", 10, seed=4, progress=False)
    db = open_node_store(config, "cs.041009")
    assert identity.count_identities("041009") == N
    db.close()

    # a second municipality into the same prefecture and national: nothing collides
    seed_population(config, "042021", N, seed=3, progress=False)
    _check_seeded(config, "042021", seed=3)
    db = open_node_store(config, "national")
    assert identity.get_provided("national", pool[0]) is None
    db.close()


def test_unknown_municipality_is_a_config_error(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    with pytest.raises(ConfigError, match="no municipality"):
        seed_population(config, "131016", 5, progress=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"juki_seed_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.mark.postgres
def test_seed_with_national_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    config = _write_config(tmp_path, national_store=pg_url)
    seed_population(config, "041009", N, seed=9, progress=False)
    _check_seeded(config, "041009", seed=9)
