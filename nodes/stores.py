"""ノードの記録 (node stores): open, initialise, purge and verify one node's own store.

Every node role owns tables in store/ and may register more of its own (the registry's
住民基本台帳, cardmgmt's cards); importing the role's module registers them before the schema is
created, so `juki store init` and the daemon agree on what the store holds.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import peewee

from juki.config import ApplianceConfig, ConfigError

ROLE_MODULES = {
    "municipal_cs": "nodes.municipal_cs",
    "prefecture": "nodes.prefecture",
    "national": "nodes.national",
    "card_management": "nodes.card_management",
    "existing_registry": "nodes.existing_registry",
}


def role_of(config: ApplianceConfig, node_id: str) -> str:
    role = config.node(node_id).role
    if role == "terminal":
        raise ConfigError(f"{node_id} is a terminal: terminals keep no store")
    return role


def load_role_module(role: str) -> Any:
    """Import the role's module (which registers its extra tables) and the audit tables."""
    importlib.import_module("store.auditlog")
    try:
        return importlib.import_module(ROLE_MODULES[role])
    except ModuleNotFoundError as exc:
        if exc.name == ROLE_MODULES[role]:
            return None  # a role without business handlers yet: plumbing only
        raise


def open_node_store(config: ApplianceConfig, node_id: str) -> peewee.Database:
    """Open and bind the node's database, creating or migrating its schema. On SQLite the
    node's runtime checkpoints the WAL itself (store.db.checkpoint_wal)."""
    from store.db import open_database
    from store.schema import init_store

    role = role_of(config, node_id)
    load_role_module(role)
    db = open_database(config.store_url(node_id), background_checkpoints=True)
    init_store(db, role)
    return db


def init_node_store(config: ApplianceConfig, node_id: str) -> list[str]:
    from store.db import open_database
    from store.schema import init_store

    role = role_of(config, node_id)
    load_role_module(role)
    db = open_database(config.store_url(node_id))
    try:
        return init_store(db, role)
    finally:
        db.close()


def verify_audit(config: ApplianceConfig, node_id: str) -> Any:
    from store.auditlog import verify_usage_chain

    db = open_node_store(config, node_id)
    try:
        return verify_usage_chain(db)
    finally:
        db.close()


OUTBOX_KEEP_SECONDS = 24 * 3600.0
"""Relayed notices are kept a day, for diagnosis only: their content lives in the files."""
INBOX_PURGE_MARGIN_SECONDS = 24 * 3600.0
"""Applied ids are forgotten a day after their notices turn stale, so that a clock step between
a purge and the service loop never forgets an id the loop would still accept."""


def purge_store(
    config: ApplianceConfig,
    role: str,
    journal: Any,
    now: datetime,
    *,
    inbox_keep: float | None = None,
) -> dict[str, Any]:
    """Everything a node forgets on schedule, in one place for the daemon's hourly job and
    `juki store purge`: the retention rules (with the configured 特例転入 period), relayed
    notices after a day, and applied notice ids once their notices are refused as stale.

    Args:
        journal: the node's store.journal.PeeweeJournal.
        inbox_keep: the service's `inbox_keep` seconds (default: the configured days).
    """
    from dataclasses import replace

    from broker.ids import first_id_at
    from store.retention import DEFAULT, purge

    policy = replace(DEFAULT, pending_move_out_days=config.policy.tokutei_tennyu_purge_days)
    report = purge(role, now=now, policy=policy)
    at = now.timestamp()
    pruned = journal.outbox_purge_sent(at - OUTBOX_KEEP_SECONDS)
    keep = config.policy.inbox_keep_days * 86400.0 if inbox_keep is None else inbox_keep
    cut_ms = int((at - keep - INBOX_PURGE_MARGIN_SECONDS) * 1000)
    forgotten = journal.inbox_purge(first_id_at(max(0, cut_ms)))
    return {**report.as_dict(), "outbox_pruned": pruned, "inbox_forgotten": forgotten}


def purge_node(
    config: ApplianceConfig, node_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """`juki store purge NODE`: the node's scheduled purge, run now."""
    from store.journal import PeeweeJournal

    role = role_of(config, node_id)
    db = open_node_store(config, node_id)
    try:
        return purge_store(config, role, PeeweeJournal(db), now or datetime.now(UTC))
    finally:
        db.close()
