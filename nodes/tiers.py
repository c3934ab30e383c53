"""上位階層の共通処理 (what the prefecture and national servers share).

Both keep a copy of the provided 本人確認情報 (都道府県知事保存 / 機構保存), apply notices in
order (store.ordering), answer queries by 住民票コード, 個人番号 or 4情報, and serve consistency
digests. Each function is a plain handler body over the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from broker.envelope import Message
from broker.service import Context, HandlerError
from nodes.env import NodeEnv
from store import identity
from store.auditlog import record_provision
from store.db import StoreUnavailable, current_database
from store.digest import DigestTree, build_tree, provided_view
from store.ordering import is_duplicate, keep_as_history, supersedes
from store.records import ProvidedIdentity, provided_from_dict
from store.validation import validate_search

log = logging.getLogger(__name__)

QUERY_LIMIT = 100


def apply_provided(
    tier: str, body: dict[str, Any], env: NodeEnv
) -> tuple[ProvidedIdentity, bool] | None:
    """Apply one update notice to the tier's file.

    Returns (the version, whether it became the current record) when the version is new to the
    tier, None for a duplicate. A duplicate (a version of this municipality and 更新順番号 the
    tier already holds, current or in history) changes nothing, which makes re-sent notices
    harmless. A stale version — the old city's 転出 arriving after the new city's 転入 — is kept
    as history only, and still travels on, so every tier's history holds every version once. A
    repair notice from a consistency check replaces whatever the tier holds.
    """
    try:
        incoming = provided_from_dict(body["provided"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HandlerError("V-1", f"malformed provided record: {exc}") from None
    lookup = incoming.old_resident_code or incoming.resident_code
    existing = identity.get_provided(tier, incoming.resident_code)  # type: ignore[arg-type]
    if existing is None and lookup != incoming.resident_code:
        existing = identity.get_provided(tier, lookup)  # type: ignore[arg-type]
    repair = bool(body.get("repair"))
    if not repair and (is_duplicate(existing, incoming) or _in_history(tier, incoming)):
        return None
    if repair or supersedes(existing, incoming):
        identity.save_provided(  # type: ignore[arg-type]
            tier, incoming, recorded_at=env.now(), previous=existing
        )
        return incoming, True
    keep_as_history(tier, incoming, env.now())
    log.info("%s: stale version of %s kept as history only", env.node_id, incoming.resident_code)
    return incoming, False


def _in_history(tier: str, incoming: ProvidedIdentity) -> bool:
    return identity.provided_version_seen(
        tier,  # type: ignore[arg-type]
        incoming.resident_code,
        incoming.municipality_code,
        incoming.sequence,
    )


def find(
    tier: str, key: dict[str, Any], limit: int = QUERY_LIMIT
) -> tuple[list[ProvidedIdentity], bool]:
    """Records matching a query key; V-7 applies to 4情報 queries here too."""
    by = key.get("by")
    if by == "resident_code":
        code = key.get("resident_code")
        if not code:
            raise HandlerError("V-1", "resident_code is required for a query by 住民票コード")
        rec = identity.get_provided(tier, code)  # type: ignore[arg-type]
        return ([rec] if rec else []), False
    if by == "individual_number":
        number = key.get("individual_number")
        if not number:
            raise HandlerError("V-1", "individual_number is required for a query by 個人番号")
        rec = identity.get_provided_by_individual_number(tier, number)  # type: ignore[arg-type]
        return ([rec] if rec else []), False
    criteria = {k: v for k, v in (key.get("criteria") or {}).items() if v not in (None, "")}
    violations = validate_search(criteria)
    if violations:
        v = violations[0]
        raise HandlerError(v.rule, v.message, "検索条件が不足しています")
    from store.search import search_provided

    found = search_provided(tier, limit=limit + 1, **criteria)
    return found[:limit], len(found) > limit


def record_query_provision(
    env: NodeEnv, msg: Message, records: list[ProvidedIdentity], legal_basis: str
) -> None:
    key = msg.body["key"]
    target = key.get("resident_code") or (
        "個人番号照会" if key["by"] == "individual_number" else "4情報照会"
    )
    record_provision(
        at=env.now(),
        operator_id=msg.header.sender,
        terminal_id=msg.header.sender,
        recipient=msg.header.sender,
        message_type=msg.header.type,
        legal_basis=legal_basis,
        target=f"{target} ({len(records)}件)",
        result="provided",
        msg_id=msg.header.msg_id,
    )


class DigestSessions:
    """Trees built for a consistency check, kept for the few minutes the check walks them.

    Building a tree scans the municipality's records once (seconds for a large city); the walk
    then asks for many prefixes over several round trips, all answered from the same snapshot.
    The scan runs on a thread of its own, never on the service loop: while it runs, a digest
    request is answered at once with ``pending`` and the checker asks again, so the tier keeps
    applying update notices and answering queries during a check (no flow blocks another).
    The thread reads through its own connection (peewee keeps one per thread), which on SQLite
    in WAL mode and on PostgreSQL sees one consistent snapshot without holding a write lock.
    """

    TTL = 600.0
    KEEP = 4
    RETRY_MS = 250
    """How soon a checker told ``pending`` should ask again."""

    def __init__(
        self,
        tier: str,
        clock: Callable[[], float] = time.time,
        build: Callable[[str, str], DigestTree] = build_tree,
    ) -> None:
        self.tier = tier
        self.clock = clock
        self._build = build
        self._trees: dict[str, tuple[float, DigestTree]] = {}
        self._building: dict[str, threading.Thread] = {}
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def tree(self, session: str, municipality: str) -> DigestTree | None:
        """The session's tree when built; otherwise starts (or keeps) its build and returns None.

        Raises:
            HandlerError: the build failed (told once; asking again starts a new build).
        """
        key = f"{session}/{municipality}"
        with self._lock:
            now = self.clock()
            for k in [k for k, (t, _) in self._trees.items() if now - t > self.TTL]:
                del self._trees[k]
            hit = self._trees.get(key)
            if hit is not None:
                return hit[1]
            failure = self._failed.pop(key, None)
            if failure is not None:
                raise HandlerError("digest_failed", failure, "整合性確認用の要約を作成できません")
            if key not in self._building:
                thread = threading.Thread(
                    target=self._run,
                    args=(key, municipality),
                    name=f"digest-{self.tier}-{municipality}",
                    daemon=True,
                )
                self._building[key] = thread
                thread.start()
        return None

    def _run(self, key: str, municipality: str) -> None:
        started = time.perf_counter()
        try:
            tree = self._build(self.tier, municipality)
        except Exception as exc:
            log.exception("%s digest tree of %s failed", self.tier, municipality)
            with self._lock:
                self._failed[key] = f"{type(exc).__name__}: {exc}"[:500]
                del self._building[key]
            return
        finally:
            _close_thread_connection()
        log.info(
            "%s digest tree of %s: %d records in %.1fs",
            self.tier,
            municipality,
            tree.total,
            time.perf_counter() - started,
        )
        with self._lock:
            self._trees[key] = (self.clock(), tree)
            del self._building[key]
            # a city's tree is tens of megabytes: keep only the latest few checks' trees
            for k in sorted(self._trees, key=lambda k: self._trees[k][0])[: -self.KEEP]:
                del self._trees[k]

    def wait(self, timeout: float) -> None:
        """Until no build is running (for tests: a build otherwise needs no waiting for)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._building.values())
            if not threads:
                return
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        tree = self.tree(body["session"], body["municipality"])
        if tree is None:
            return {"digests": [], "leaves": [], "total": 0, "pending": self.RETRY_MS}
        return tree.answer(body["prefixes"], bool(body["leaves"]))


def _close_thread_connection() -> None:
    """Close this thread's store connection (a build thread's, which ends with it)."""
    try:
        db = current_database()
    except StoreUnavailable:
        return
    if not db.is_closed():
        db.close()


def records_for(tier: str, body: dict[str, Any]) -> dict[str, Any]:
    """The differing records a consistency check asks for, in the view its tree hashed (raw
    rows, so a row corrupted into something the dataclasses would refuse is still shown)."""
    return {"records": provided_view(tier, body["municipality"], body["codes"])}


def forward_body(provided: dict[str, Any], repair: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"provided": provided}
    if repair:
        body["repair"] = True
    return body


def check_owner(env: NodeEnv, ctx: Context, municipality: str) -> None:
    """A CS may only speak for its own municipality's residents."""
    sender = env.config.nodes.get(ctx.message.header.sender)
    if sender is not None and sender.role == "municipal_cs" and sender.municipality != municipality:
        raise HandlerError(
            "route", f"{sender.id} cannot send records of municipality {municipality}"
        )
