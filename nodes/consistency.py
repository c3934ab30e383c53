"""本人確認情報整合 (CS-6 consistency check): CS ↔ 都道府県サーバ ↔ 全国サーバ, by digest walk.

住基法14条 asks the CS to give the prefecture and national 整合性確認用本人確認情報 so that the
three files can be shown to agree (seed-digest CS-6, §5.6: about once a year, and 「定期的に」
between the CS and the prefecture). Shipping the whole municipality (消除者を含む) would move
hundreds of megabytes for a city; instead the CS compares digest trees (store/digest.py): it
builds its own, then for each peer — its prefecture first, then national — asks only about the
children of prefixes that differ, one request per level, then for the leaves of the buckets that
differ, then for the records of the codes that differ, and reports each mismatch with the
住民票コード, the tier, the kind (missing at the tier / extra at the tier / differs) and the
items that differ.

The tool runs on the CS host as the CS's own identity (the route table lets a CS ask its own
prefecture `pref.cs.*` and national `national.cs.*`); it reads the CS's store and, with
``repair=True``, writes repair notices into the CS's outbox, which the running CS relays —
exactly the row a handler's ``ctx.send`` would have written.

Bytes are counted two ways: ``body_bytes`` are the msgpack sizes of request bodies and reply
bodies (the plaintext payload), ``wire_bytes`` the sizes of the same messages sealed (header,
signature and crypto_box overhead included), obtained by sealing them again with the CS's keys.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from broker.envelope import Header, Kind, Sealer
from broker.errors import RpcTimeout
from broker.ids import new_message_id
from juki.config import ApplianceConfig
from store.digest import (
    DEFAULT_DEPTH,
    PROVIDED_KEYS,
    DigestTree,
    LeafDifference,
    WalkStep,
    field_differences,
    provided_view,
    scan,
    walk,
)

log = logging.getLogger(__name__)

RECORDS_PER_REQUEST = 1_000
"""Differing records fetched per request (a provided record is ~250 bytes)."""
BUILD_TIMEOUT = 600.0
"""How long a tier may take to build its tree (off its service loop; a city of a million takes
seconds): until then it answers a digest question with ``pending`` and is asked again."""

MOVED_OUT = "転出"
"""異動事由 after which the person may already be another municipality's resident."""


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of the check, for a progress bar: `done` of `total` steps."""

    done: int
    total: int
    description: str


Progress = Callable[[ProgressEvent], None]


@dataclass(slots=True)
class Mismatch:
    resident_code: str
    tier: str
    """'prefecture' or 'national'."""
    node: str
    kind: str
    """'missing' (the tier lacks the CS's record), 'extra' (only the tier has it), 'differs'."""
    fields: list[str]
    """Provided items that differ (all of them for missing / extra)."""
    cs_sequence: int | None = None
    tier_sequence: int | None = None


@dataclass(slots=True)
class Repair:
    resident_code: str
    msg_id: str
    mode: str
    """'repair' (overwrites the tier's copy) or 'ordered' (an ordinary notice: the person moved
    out, and the tier may already hold the new municipality's record, which must win)."""


@dataclass(slots=True)
class PeerReport:
    node: str
    tier: str
    records: int = 0
    round_trips: int = 0
    """Questions of the walk and record fetches (not the build polls below)."""
    build_polls: int = 0
    """Questions answered ``pending`` or sent only to start the tier's tree build."""
    body_bytes: int = 0
    wire_bytes: int = 0
    mismatches: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """walk (digests and leaves, including the tier's tree build) and records."""
    levels: list[dict[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class ConsistencyReport:
    municipality: str
    cs: str
    session: str
    repair: bool
    started_at: str
    cs_records: int = 0
    full_dump_bytes: int = 0
    """A full dump of the municipality's provided records (msgpack maps), per peer."""
    peers: list[PeerReport] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def body_bytes(self) -> int:
        return sum(p.body_bytes for p in self.peers)

    @property
    def wire_bytes(self) -> int:
        return sum(p.wire_bytes for p in self.peers)

    @property
    def round_trips(self) -> int:
        return sum(p.round_trips for p in self.peers)

    def describe(self) -> str:
        """A few lines for an operator: the verdict, the cost, then one line per mismatch."""
        d = self.to_dict()
        lines = [
            f"整合性確認 {self.municipality} ({self.cs}): {self.cs_records:,} records, "
            f"{len(self.mismatches)} mismatches",
            f"  {self.round_trips} round trips, {self.wire_bytes:,} bytes on the wire "
            f"(a full dump: {d['full_dump_bytes_all_peers']:,} bytes)",
        ]
        for p in self.peers:
            lines.append(f"  {p.node}: {p.records:,} records, {p.mismatches} mismatches")
        for m in self.mismatches:
            items = "all items" if m.kind != "differs" else ", ".join(m.fields)
            lines.append(f"  {m.resident_code} {m.node:<10} {m.kind:<8} {items}")
        if self.repairs:
            lines.append(f"  {len(self.repairs)} repair notices queued in {self.cs}'s outbox")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        dump = self.full_dump_bytes * max(1, len(self.peers))
        out.update(
            ok=self.ok,
            body_bytes=self.body_bytes,
            wire_bytes=self.wire_bytes,
            round_trips=self.round_trips,
            full_dump_bytes_all_peers=dump,
            ratio_to_full_dump=round(self.wire_bytes / dump, 8) if dump else None,
        )
        return out


class _Peer:
    """One tier as the walk sees it: questions over RPC, every byte and round trip counted."""

    def __init__(
        self,
        client: Any,
        sealer: Sealer,
        me: str,
        node: str,
        prefix: str,
        municipality: str,
        session: str,
        report: PeerReport,
        timeout: float,
    ) -> None:
        self.client = client
        self.sealer = sealer
        self.me = me
        self.node = node
        self.prefix = prefix
        self.municipality = municipality
        self.session = session
        self.report = report
        self.timeout = timeout

    def _call(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = self.client.call(self.node, type_, body, self.timeout)
        if data.get("pending") or not body.get("prefixes", True):
            self.report.build_polls += 1
        else:
            self.report.round_trips += 1
        reply = {"ok": True, "data": data}
        self.report.body_bytes += _packed_size(body) + _packed_size(reply)
        self.report.wire_bytes += self._sealed_size(Kind.REQUEST, type_, body)
        self.report.wire_bytes += self._sealed_size(Kind.REPLY, type_, reply)
        return data

    def _sealed_size(self, kind: Kind, type_: str, body: dict[str, Any]) -> int:
        """The size of the message as it travelled: the same header fields (a reply carries a
        correlation id and the request's 32-byte hash) sealed with the same kind of keys."""
        now = int(time.time() * 1000)
        reply = kind is Kind.REPLY
        header = Header(
            1,
            new_message_id(),
            kind,
            type_,
            self.me,
            self.node,
            now,
            now + 10_000,
            new_message_id() if reply else None,
            b"\0" * 32 if reply else None,
        )
        return len(self.sealer.seal(header, body))

    def start_build(self) -> None:
        """Have the tier start building the session's tree (an empty question answers at once)."""
        self._call(f"{self.prefix}.cs.digest", self._digest_body([], False))

    def _digest_body(self, prefixes: list[str], leaves: bool) -> dict[str, Any]:
        return {
            "municipality": self.municipality,
            "session": self.session,
            "prefixes": prefixes,
            "leaves": leaves,
        }

    def ask(self, prefixes: list[str], leaves: bool) -> dict[str, Any]:
        body = self._digest_body(prefixes, leaves)
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:
            data = self._call(f"{self.prefix}.cs.digest", body)
            pending = data.get("pending")
            if not pending:
                return data
            if time.monotonic() + pending / 1000 > deadline:
                raise RpcTimeout(self.node, f"{self.prefix}.cs.digest", BUILD_TIMEOUT)
            time.sleep(pending / 1000)

    def records(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(codes), RECORDS_PER_REQUEST):
            chunk = codes[i : i + RECORDS_PER_REQUEST]
            body = {"municipality": self.municipality, "codes": chunk}
            for rec in self._call(f"{self.prefix}.cs.records", body)["records"]:
                out[rec["resident_code"]] = rec
        return out


def _packed_size(value: Any) -> int:
    return len(msgpack.packb(value, use_bin_type=True))


def run_check(
    config: ApplianceConfig,
    municipality: str,
    *,
    repair: bool = False,
    progress: Progress | None = None,
    depth: int = DEFAULT_DEPTH,
) -> ConsistencyReport:
    """Compare the municipality's CS with its prefecture and national; optionally queue repairs.

    Runs as the municipality's CS (its keys, its store). Raises BrokerUnavailable when RabbitMQ
    does not answer, RpcTimeout / RemoteError when a tier does not or refuses.
    """
    from broker.keys import TrustStore, load_identity
    from nodes.client import check_broker, client_for
    from store.db import open_database

    cs = config.cs_for_municipality(municipality)
    prefecture = config.municipalities[municipality].prefecture
    peers = [
        (config.prefecture_node(prefecture), "prefecture", "pref"),
        (config.single("national"), "national", "national"),
    ]
    session = new_message_id()
    report = ConsistencyReport(
        municipality=municipality,
        cs=cs,
        session=session,
        repair=repair,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    total_steps = 1 + len(peers) * (depth + 2) + (1 if repair else 0)
    done = 0

    def tick(description: str, steps: int = 1) -> None:
        nonlocal done
        done = min(total_steps, done + steps)
        if progress is not None:
            progress(ProgressEvent(done, total_steps, description))

    if progress is not None:
        progress(ProgressEvent(0, total_steps, f"{cs}: building the digest tree"))
    check_broker(config)
    db = open_database(config.store_url(cs))
    passphrase = os.environ.get(config.passphrase_env)
    identity = load_identity(config.keys_dir, cs, passphrase.encode() if passphrase else None)
    sealer = Sealer(identity, TrustStore.load(config.trust_file))
    try:
        started = time.perf_counter()
        with client_for(config, cs) as client:
            walkers = []
            for node, tier, prefix in peers:
                peer_report = PeerReport(node=node, tier=tier)
                report.peers.append(peer_report)
                peer = _Peer(
                    client,
                    sealer,
                    cs,
                    node,
                    prefix,
                    municipality,
                    session,
                    peer_report,
                    config.policy.rpc_timeout_seconds,
                )
                peer.start_build()  # the tiers build their trees while we build ours
                walkers.append((peer, peer_report, tier))
            mine, dump = scan("cs", municipality, depth)
            report.seconds["cs_tree"] = round(time.perf_counter() - started, 3)
            report.cs_records = mine.total
            report.full_dump_bytes = dump
            tick(f"{cs}: {mine.total:,} records hashed")
            for peer, peer_report, tier in walkers:
                before = done
                found = _check_peer(mine, peer, peer_report, tier, tick)
                report.mismatches += found
                tick(f"{peer.node}: {len(found)} mismatches", max(0, before + depth + 2 - done))
        report.seconds["total"] = round(time.perf_counter() - started, 3)
        if repair:
            report.repairs = _queue_repairs(config, cs, municipality, report.mismatches)
            tick(f"{cs}: {len(report.repairs)} repair notices queued")
    finally:
        db.close()
    return report


def _check_peer(
    mine: DigestTree,
    peer: _Peer,
    peer_report: PeerReport,
    tier: str,
    tick: Callable[..., None],
) -> list[Mismatch]:
    started = time.perf_counter()

    def on_step(s: WalkStep) -> None:
        peer_report.levels.append(asdict(s))
        where = "leaves" if s.level < 0 else f"level {s.level}"
        tick(f"{peer.node}: {where}, {s.differing} of {s.asked} differ")

    result = walk(mine, peer.ask, on_step=on_step)
    peer_report.records = result.peer_total
    peer_report.seconds["walk"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    differs = [d.resident_code for d in result.differences if d.kind == "differs"]
    mine_records = {
        r["resident_code"]: r
        for r in provided_view(
            "cs", peer.municipality, [d.resident_code for d in result.differences]
        )
    }
    theirs = peer.records(differs) if differs else {}
    peer_report.seconds["records"] = round(time.perf_counter() - started, 3)
    found = [_mismatch(d, tier, peer.node, mine_records, theirs) for d in result.differences]
    peer_report.mismatches = len(found)
    return found


def _mismatch(
    d: LeafDifference,
    tier: str,
    node: str,
    mine: dict[str, dict[str, Any]],
    theirs: dict[str, dict[str, Any]],
) -> Mismatch:
    ours = mine.get(d.resident_code)
    other = theirs.get(d.resident_code)
    fields = field_differences(ours, other) if d.kind == "differs" else list(PROVIDED_KEYS)
    return Mismatch(
        resident_code=d.resident_code,
        tier=tier,
        node=node,
        kind=d.kind,
        fields=fields,
        cs_sequence=ours.get("sequence") if ours else None,
        tier_sequence=other.get("sequence") if other else None,
    )


def _queue_repairs(
    config: ApplianceConfig, cs: str, municipality: str, mismatches: list[Mismatch]
) -> list[Repair]:
    """Re-send the CS's current record of every code missing or differing at a tier, once per
    code, to the prefecture (which applies it and forwards it to national).

    A repair notice overwrites whatever the tier holds — except for a person the CS removed by
    転出: the tier may already hold the new municipality's record, which a repair would clobber
    at national; that record is re-sent as an ordinary notice and the update-order rule
    decides. Records only the tier holds are reported, never deleted from here.
    """
    from nodes import messages
    from store.journal import PeeweeJournal

    codes = sorted({m.resident_code for m in mismatches if m.kind != "extra"})
    if not codes:
        return []
    pref = config.prefecture_node(config.municipalities[municipality].prefecture)
    type_ = "pref.cs.identity_update"
    routes = config.route_table()
    if not routes.allows(cs, pref, type_, Kind.NOTICE):
        raise ValueError(f"route table does not allow {cs} → {pref} {type_}")
    schemas = messages.registry()
    from store.db import current_database

    journal = PeeweeJournal(current_database())
    records = {r["resident_code"]: r for r in provided_view("cs", municipality, codes)}
    out: list[Repair] = []
    with journal.atomic():
        for code in codes:
            record = records.get(code)
            if record is None:  # gone from the CS since the walk
                continue
            moved_out = record.get("change_reason") == MOVED_OUT
            body: dict[str, Any] = {"provided": record}
            if not moved_out:
                body["repair"] = True
            msg_id = new_message_id()
            probe = Header(1, msg_id, Kind.NOTICE, type_, cs, pref, 0, 0, None)
            schemas.validate_body(probe, body)
            journal.outbox_add(msg_id, pref, type_, body, time.time())
            out.append(Repair(code, msg_id, "ordered" if moved_out else "repair"))
    log.info("%s: %d consistency repair notices queued for %s", cs, len(out), pref)
    return out
