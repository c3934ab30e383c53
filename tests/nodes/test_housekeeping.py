"""A node's housekeeping: its scheduled purge (`juki store purge`, the daemon's hourly job) — the
configured 特例転入 period, relayed notices after a day, applied notice ids only once their notices
are stale — and the outbox backlog its health reports."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee
import pytest

from broker.ids import first_id_at, new_message_id
from juki.config import ApplianceConfig, parse
from nodes.stores import INBOX_PURGE_MARGIN_SECONDS, open_node_store, purge_node
from store.journal import PeeweeJournal
from store.models import PendingMoveOutRow

ROOT = Path(__file__).resolve().parents[2]
CS = "cs.041009"
NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path) -> ApplianceConfig:
    raw = tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))
    raw["policy"]["tokutei_tennyu_purge_days"] = 5
    raw["policy"]["inbox_keep_days"] = 60
    return parse(raw, tmp_path / "appliance.toml")


@pytest.fixture
def store(config: ApplianceConfig) -> Iterator[peewee.Database]:
    db = open_node_store(config, CS)
    yield db
    db.close()


def _made_at(at: datetime) -> str:
    # an id made at `at` (new_message_id never goes back in time within a process)
    return first_id_at(int(at.timestamp() * 1000))[:10] + new_message_id()[10:]


def _inbox(db: peewee.Database) -> set[str]:
    return {r[0] for r in db.execute_sql('SELECT "msg_id" FROM "inbox"')}


def test_applied_ids_are_forgotten_only_a_day_after_their_notices_turn_stale(
    config: ApplianceConfig, store: peewee.Database
) -> None:
    journal = PeeweeJournal(store)
    stale_from = NOW - timedelta(days=60)  # the service refuses notices made before this
    margin = timedelta(seconds=INBOX_PURGE_MARGIN_SECONDS)
    gone = [_made_at(stale_from - margin - timedelta(milliseconds=1)), _made_at(NOW.replace(1990))]
    stale_but_kept = _made_at(stale_from - margin + timedelta(milliseconds=1))
    fresh = [_made_at(stale_from), _made_at(NOW - timedelta(days=1))]
    kept = [stale_but_kept, *fresh]
    journal.inbox_add_many([(m, "registry.041009", "t", 1.0) for m in gone + kept])

    report = purge_node(config, CS, now=NOW)

    assert report["inbox_forgotten"] == len(gone)
    assert _inbox(store) == set(kept)
    # nothing the service would still accept was forgotten: every id left out is stale
    assert all(m < first_id_at(int(stale_from.timestamp() * 1000)) for m in gone)


def test_relayed_notices_go_after_a_day_and_waiting_ones_stay(
    config: ApplianceConfig, store: peewee.Database
) -> None:
    journal = PeeweeJournal(store)
    old = journal.outbox_add("old", "pref.04", "t", {}, 0.0)
    recent = journal.outbox_add("recent", "pref.04", "t", {}, 0.0)
    journal.outbox_add("waiting", "pref.04", "t", {}, 0.0)
    journal.outbox_mark_sent([old], (NOW - timedelta(days=1, seconds=1)).timestamp())
    journal.outbox_mark_sent([recent], (NOW - timedelta(hours=23)).timestamp())
    journal.outbox_write_marks()

    assert purge_node(config, CS, now=NOW)["outbox_pruned"] == 1
    left = [r[0] for r in store.execute_sql('SELECT "msg_id" FROM "outbox" ORDER BY "seq"')]
    assert left == ["recent", "waiting"]


def test_store_purge_applies_the_configured_tokutei_tennyu_period(
    config: ApplianceConfig, store: peewee.Database
) -> None:
    # appliance.toml says 5 days; the built-in default (30) would keep this one
    PendingMoveOutRow.insert(
        resident_code="60000000001",
        from_municipality="131016",
        content={"name": "千代田 花子", "resident_code": "60000000001"},
        received_at=NOW - timedelta(days=6),
        status="pending",
    ).execute()

    report = purge_node(config, CS, now=NOW)

    assert report["counts"]["pending_move_out"] == 1
    assert PendingMoveOutRow.get().status == "purged"


def test_health_says_how_long_the_oldest_waiting_notice_has_waited(
    config: ApplianceConfig, tmp_path: Path
) -> None:
    # the backlog `juki ctl status` shows for a node whose upstream is out of reach
    from broker.keys import init_keys
    from nodes.runtime import NodeRuntime

    init_keys(config.keys_dir, config.trust_file, [n.id for n in config.nodes.values()], None)
    now = NOW.timestamp()
    runtime = NodeRuntime(config, CS, clock=lambda: now)
    try:
        assert runtime.health()["outbox_oldest_seconds"] is None
        runtime.journal.outbox_add("m1", "pref.04", "t", {}, now - 7200.0)
        runtime.journal.outbox_add("m2", "pref.04", "t", {}, now - 60.0)
        health = runtime.health()
        assert (health["outbox_depth"], health["outbox_oldest_seconds"]) == (2, 7200.0)
    finally:
        runtime.db.close()
