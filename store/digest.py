"""整合性確認用ダイジェスト (consistency digests, CS-6): a prefix tree of record hashes.

住基法14条 asks that the CS's file, the prefecture's and national's agree. Shipping every record
(the seed's 「整合性確認用本人確認情報」 as a full dump) costs hundreds of megabytes for a city;
instead each tier hashes what it holds into a tree keyed by 住民票コード prefixes — 住民票コード
are random digits, so the decimal prefixes split a city evenly — and the check walks down only
the subtrees whose hashes differ. A handful of differences among a million records costs a few
kilobytes.

Leaf hash = blake2b-128 over the canonical msgpack of the provided view of the record (the items
every tier shares, including 更新順番号), so a record that is stale, edited or missing at one
tier shows as a differing leaf. Node hash = blake2b-128 over the children's (digit, hash, count)
in digit order, recomputed from the records at each check (never from stored digests), so a row
edited behind the application's back is found too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

HASH_SIZE = 16
DEFAULT_DEPTH = 5
"""Leaf buckets are 5-digit prefixes: 100,000 buckets, about 11 records each for 1.1 M."""

_EMPTY = b"\x00" * HASH_SIZE


def leaf_hash(provided: Mapping[str, Any]) -> bytes:
    """Hash one record's provided view (a dict from store.records.provided_to_dict)."""
    canonical = msgpack.packb(sorted(provided.items()), use_bin_type=True)
    return hashlib.blake2b(canonical, digest_size=HASH_SIZE).digest()


@dataclass(slots=True)
class DigestTree:
    """Hashes of every prefix of length 0…depth over one municipality's records at one tier."""

    depth: int = DEFAULT_DEPTH
    leaves: dict[str, bytes] = field(default_factory=dict)
    """住民票コード → leaf hash."""
    nodes: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    """prefix → (hash, record count); absent prefixes are empty."""

    @classmethod
    def build(cls, items: Iterable[tuple[str, bytes]], depth: int = DEFAULT_DEPTH) -> DigestTree:
        tree = cls(depth=depth)
        buckets: dict[str, list[tuple[str, bytes]]] = {}
        for code, h in items:
            tree.leaves[code] = h
            buckets.setdefault(code[:depth], []).append((code, h))
        level: dict[str, tuple[bytes, int]] = {}
        for prefix, members in buckets.items():
            members.sort()
            hasher = hashlib.blake2b(digest_size=HASH_SIZE)
            for code, h in members:
                hasher.update(code.encode())
                hasher.update(h)
            level[prefix] = (hasher.digest(), len(members))
        tree.nodes.update(level)
        for length in range(depth - 1, -1, -1):
            parents: dict[str, list[tuple[str, bytes, int]]] = {}
            for prefix, (h, n) in level.items():
                parents.setdefault(prefix[:length], []).append((prefix[length:], h, n))
            level = {}
            for prefix, children in parents.items():
                children.sort()
                hasher = hashlib.blake2b(digest_size=HASH_SIZE)
                total = 0
                for digit, h, n in children:
                    hasher.update(digit.encode())
                    hasher.update(h)
                    total += n
                level[prefix] = (hasher.digest(), total)
            tree.nodes.update(level)
        if "" not in tree.nodes:
            tree.nodes[""] = (_EMPTY, 0)
        return tree

    def digest(self, prefix: str) -> tuple[bytes, int]:
        return self.nodes.get(prefix, (_EMPTY, 0))

    def children(self, prefix: str) -> list[str]:
        """The ten child prefixes (empty ones included, so both sides compare the same list)."""
        return [prefix + d for d in "0123456789"]

    def leaves_under(self, prefix: str) -> dict[str, bytes]:
        return {c: h for c, h in self.leaves.items() if c.startswith(prefix)}

    @property
    def total(self) -> int:
        return self.digest("")[1]


@dataclass(frozen=True, slots=True)
class LeafDifference:
    resident_code: str
    kind: str
    """'missing' (the peer lacks it), 'extra' (only the peer has it) or 'differs'."""


def diff_leaves(mine: Mapping[str, bytes], theirs: Mapping[str, bytes]) -> list[LeafDifference]:
    out: list[LeafDifference] = []
    for code in sorted(set(mine) | set(theirs)):
        a, b = mine.get(code), theirs.get(code)
        if a == b:
            continue
        kind = "missing" if b is None else "extra" if a is None else "differs"
        out.append(LeafDifference(code, kind))
    return out


def field_differences(
    mine: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None
) -> list[str]:
    """Names of the provided items whose values differ (all of them when one side is absent)."""
    if mine is None or theirs is None:
        present = mine if mine is not None else theirs or {}
        return sorted(present)
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def provided_items(
    tier: str, municipality: str, codes: Iterable[str] | None = None
) -> Iterable[tuple[str, dict[str, Any]]]:
    """(住民票コード, provided dict) for one municipality at a tier ('cs', 'prefecture',
    'national'), every record or just `codes` — the same canonical view at every tier."""
    from store import identity
    from store.records import provided_from, provided_to_dict

    wanted = set(codes) if codes is not None else None
    if tier == "cs":
        if wanted is not None:
            for code in sorted(wanted):
                rec = identity.get_by_resident_code(code)
                if rec is not None and rec.municipality_code == municipality:
                    yield code, provided_to_dict(provided_from(rec))
            return
        for rec in identity.iter_identities(municipality):
            yield rec.resident_code, provided_to_dict(provided_from(rec))
        return
    if wanted is not None:
        for code in sorted(wanted):
            p = identity.get_provided(tier, code)  # type: ignore[arg-type]
            if p is not None and p.municipality_code == municipality:
                yield code, provided_to_dict(p)
        return
    for p in _iter_tier(tier, municipality):
        yield p.resident_code, provided_to_dict(p)


def build_tree(tier: str, municipality: str, depth: int = DEFAULT_DEPTH) -> DigestTree:
    return DigestTree.build(
        ((code, leaf_hash(d)) for code, d in provided_items(tier, municipality)), depth
    )


def _iter_tier(tier: str, municipality: str, batch: int = 5_000) -> Iterable[Any]:
    """Stream a tier's provided records of one municipality (keyset pagination on the row id)."""
    from store.db import current_database, translate_errors
    from store.identity import _tier

    codec = _tier(tier)
    db = current_database()
    p = db.param
    select = codec.select_sql.replace(" FROM ", ', "t1"."id" FROM ', 1)
    sql = (
        f'{select} WHERE "t1"."id" > {p} AND "t1"."municipality_code" = {p} '
        f'ORDER BY "t1"."id" LIMIT {int(batch)}'
    )
    last = 0
    while True:
        with translate_errors():
            rows = db.execute_sql(sql, (last, municipality)).fetchall()
        for row in rows:
            yield codec.to_record(row[:-1])
        if len(rows) < batch:
            return
        last = rows[-1][-1]
