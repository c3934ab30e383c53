"""整合性確認用ダイジェスト (consistency digests, CS-6): a prefix tree of record hashes.

住基法14条 asks that the CS's file, the prefecture's and national's agree. Shipping every record
(the seed's 「整合性確認用本人確認情報」 as a full dump) costs hundreds of megabytes for a city;
instead each tier hashes what it holds into a tree keyed by 住民票コード prefixes — 住民票コード
are random digits, so the decimal prefixes split a city evenly — and the check walks down only
the subtrees whose hashes differ. A handful of differences among a million records costs a few
kilobytes.

Leaf hash = blake2b-128 over the msgpack of the provided view of the record (the items
every tier shares, including 更新順番号), so a record that is stale, edited or missing at one
tier shows as a differing leaf. A bucket (prefix of DEFAULT_DEPTH digits) hashes its (code, leaf
hash) pairs in code order; a node above hashes its children's (digit, hash) in digit order, and
the walk compares (hash, record count). Everything is recomputed from the rows at each check
(never from stored digests), so a row edited behind the application's back is found too.

The view hashed at a tier is read from the raw rows (`iter_provided_raw`), not through the
record dataclasses: same values, a fraction of the cost. `walk` is the comparison itself, over
any `Ask` callable (an RPC in nodes/consistency.py, another tree in the tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgpack

from store.records import PROVIDED_FIELDS

HASH_SIZE = 16
CODE_LENGTH = 11
"""住民票コード: 10 digits and a check digit."""
DEFAULT_DEPTH = 5
"""Leaf buckets are 5-digit prefixes: 100,000 buckets, about 11 records each for 1.1 M."""

_EMPTY = b"\x00" * HASH_SIZE


def leaf_hash(provided: Mapping[str, Any]) -> bytes:
    """Hash one record's provided view (a dict from store.records.provided_to_dict).

    blake2b-128 over msgpack(sorted keys) followed by msgpack(their values in that order): both
    are self-delimiting, so keys and values cannot trade places; and with the key part fixed for
    provided records, `scan` hashes a row as one pack of its values (a third of the cost of
    packing key/value pairs, which matters at a million rows per tier).
    """
    keys = sorted(provided)
    hasher = hashlib.blake2b(msgpack.packb(keys, use_bin_type=True), digest_size=HASH_SIZE)
    hasher.update(msgpack.packb([provided[k] for k in keys], use_bin_type=True))
    return hasher.digest()


@dataclass(slots=True)
class DigestTree:
    """Hashes of every prefix of length 0…depth over one municipality's records at one tier.

    Leaves are kept per bucket (prefix of length `depth`) as one bytes object: the bucket's
    records sorted by code, each as 11 ASCII digits + its 16-byte hash. A million leaves then
    cost ~30 MB instead of ~250 MB as a dict, and the bucket hash is one blake2b call over it.
    """

    depth: int = DEFAULT_DEPTH
    buckets: dict[str, bytes] = field(default_factory=dict)
    """bucket prefix → concatenated (code, leaf hash), sorted by code."""
    nodes: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    """prefix → (hash, record count); absent prefixes are empty."""

    @classmethod
    def build(cls, items: Iterable[tuple[str, bytes]], depth: int = DEFAULT_DEPTH) -> DigestTree:
        tree = cls(depth=depth)
        grouped: dict[str, list[bytes]] = {}
        for code, h in items:
            key = code[:depth]
            entry = code.encode() + h
            members = grouped.get(key)
            if members is None:
                grouped[key] = [entry]
            else:
                members.append(entry)
        level: dict[str, tuple[bytes, int]] = {}
        blake = hashlib.blake2b
        for prefix, entries in grouped.items():
            entries.sort()
            blob = b"".join(entries)
            tree.buckets[prefix] = blob
            level[prefix] = (blake(blob, digest_size=HASH_SIZE).digest(), len(entries))
        del grouped
        tree.nodes.update(level)
        for length in range(depth - 1, -1, -1):
            parents: dict[str, list[tuple[str, bytes, int]]] = {}
            for prefix, (h, n) in level.items():
                parents.setdefault(prefix[:length], []).append((prefix[length:], h, n))
            level = {}
            for prefix, children in parents.items():
                children.sort()
                hasher = blake(digest_size=HASH_SIZE)
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
        """住民票コード → leaf hash for every record whose code starts with `prefix`."""
        if len(prefix) >= self.depth:
            blobs = [self.buckets.get(prefix[: self.depth], b"")]
        else:
            blobs = [b for k, b in self.buckets.items() if k.startswith(prefix)]
        out: dict[str, bytes] = {}
        width = CODE_LENGTH + HASH_SIZE
        for blob in blobs:
            for i in range(0, len(blob), width):
                code = blob[i : i + CODE_LENGTH].decode()
                if code.startswith(prefix):
                    out[code] = blob[i + CODE_LENGTH : i + width]
        return out

    def answer(self, prefixes: Iterable[str], leaves: bool) -> dict[str, Any]:
        """What a tier replies to a consistency question (the `Ask` shape `walk` expects)."""
        digests = []
        found: list[dict[str, Any]] = []
        for prefix in prefixes:
            h, n = self.digest(prefix)
            digests.append({"prefix": prefix, "hash": h, "count": n})
            if leaves and n:
                found += [
                    {"code": c, "hash": lh} for c, lh in sorted(self.leaves_under(prefix).items())
                ]
        return {"digests": digests, "leaves": found, "total": self.total}

    @property
    def leaves(self) -> dict[str, bytes]:
        """Every leaf (builds a dict: for tests and small trees, not for a city)."""
        return self.leaves_under("")

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


# --- the walk -----------------------------------------------------------------------------------

Ask = Callable[[list[str], bool], Mapping[str, Any]]
"""Ask the peer about prefixes: (prefixes, with leaves) → a reply shaped like
``nodes.tiers.DigestSessions.answer`` ({digests: [{prefix, hash, count}], leaves: [{code,
hash}], total}). The walk never needs to know how the question travels."""

MAX_PREFIXES = 50_000
"""Prefixes per question (a reply of that many digests is ~2 MB, well under the wire limit)."""
MAX_LEAVES = 50_000
"""Leaves per question, counted from the peer's own bucket counts."""


@dataclass(frozen=True, slots=True)
class WalkStep:
    """One round of questions: `level` is the prefix length (-1 for the leaves round)."""

    level: int
    asked: int
    differing: int
    questions: int


@dataclass(slots=True)
class WalkResult:
    differences: list[LeafDifference]
    steps: list[WalkStep]
    peer_total: int


def walk(
    mine: DigestTree,
    ask: Ask,
    *,
    on_step: Callable[[WalkStep], None] | None = None,
    max_prefixes: int = MAX_PREFIXES,
    max_leaves: int = MAX_LEAVES,
) -> WalkResult:
    """Find every differing leaf between `mine` and a peer's tree, asking only about children
    of prefixes that differ, one batch of questions per level.

    The first question covers the root and its ten children together (one round trip when the
    trees agree). A prefix the peer holds nothing under needs no further questions: everything of
    ours below it is missing there. A prefix we hold nothing under is asked for its leaves
    directly: everything below it is extra there. Otherwise the walk goes down to the buckets
    (prefix length = depth) and asks for the leaves of the differing ones.
    """
    depth = mine.depth
    steps: list[WalkStep] = []
    missing: list[str] = []  # prefixes whose every leaf of ours is missing at the peer
    leaf_prefixes: list[tuple[str, int]] = []  # (prefix, peer count): fetch their leaves

    def step(level: int, asked: int, differing: int, questions: int) -> None:
        s = WalkStep(level, asked, differing, questions)
        steps.append(s)
        if on_step is not None:
            on_step(s)

    def ask_digests(prefixes: list[str]) -> tuple[dict[str, tuple[bytes, int]], int, int]:
        answers: dict[str, tuple[bytes, int]] = {}
        total = questions = 0
        for i in range(0, len(prefixes), max_prefixes):
            reply = ask(prefixes[i : i + max_prefixes], False)
            questions += 1
            total = int(reply["total"])
            for d in reply["digests"]:
                answers[d["prefix"]] = (bytes(d["hash"]), int(d["count"]))
        return answers, total, questions

    def sort_out(prefixes: list[str], answers: dict[str, tuple[bytes, int]]) -> list[str]:
        """The prefixes to descend into; the others are settled or queued for leaves."""
        descend = []
        for prefix in prefixes:
            ours = mine.digest(prefix)
            theirs = answers.get(prefix, (_EMPTY, 0))
            if ours == theirs:
                continue
            if theirs[1] == 0:
                missing.append(prefix)
            elif (ours[1] == 0 and theirs[1] <= max_leaves) or len(prefix) >= depth:
                leaf_prefixes.append((prefix, theirs[1]))
            else:
                descend.append(prefix)
        return descend

    first = ["", *mine.children("")] if depth > 0 else [""]
    answers, peer_total, questions = ask_digests(first)
    if answers.get("", (_EMPTY, 0)) == mine.digest(""):
        step(0, len(first), 0, questions)
        return WalkResult([], steps, peer_total)
    if depth == 0:
        frontier = sort_out([""], answers)
        step(0, 1, 1, questions)
    else:
        frontier = sort_out(first[1:], answers)
        step(1, len(first), len(frontier) + len(missing) + len(leaf_prefixes), questions)
    level = 1
    while frontier and level < depth:
        level += 1
        before = len(missing) + len(leaf_prefixes)
        prefixes = [c for p in frontier for c in mine.children(p)]
        answers, peer_total, questions = ask_digests(prefixes)
        frontier = sort_out(prefixes, answers)
        step(
            level,
            len(prefixes),
            len(frontier) + len(missing) + len(leaf_prefixes) - before,
            questions,
        )

    theirs: dict[str, bytes] = {}
    if leaf_prefixes:
        questions = 0
        batch: list[str] = []
        weight = 0
        for prefix, count in [*leaf_prefixes, ("", -1)]:
            if batch and (count < 0 or weight + count > max_leaves or len(batch) >= max_prefixes):
                reply = ask(batch, True)
                questions += 1
                for leaf in reply["leaves"]:
                    theirs[leaf["code"]] = bytes(leaf["hash"])
                batch, weight = [], 0
            if count >= 0:
                batch.append(prefix)
                weight += count
        step(-1, len(leaf_prefixes), len(leaf_prefixes), questions)
    ours: dict[str, bytes] = {}
    for prefix, _ in leaf_prefixes:
        ours.update(mine.leaves_under(prefix))
    differences = diff_leaves(ours, theirs)
    for prefix in missing:
        differences += [LeafDifference(c, "missing") for c in mine.leaves_under(prefix)]
    differences.sort(key=lambda d: d.resident_code)
    return WalkResult(differences, steps, peer_total)


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
    return scan(tier, municipality, depth)[0]


def scan(tier: str, municipality: str, depth: int = DEFAULT_DEPTH) -> tuple[DigestTree, int]:
    """The tier's tree for a municipality, and what a full dump of the same view would weigh
    (the sum of the msgpack sizes of the provided records as maps) — measured in the same pass,
    since the canonical bytes are in hand anyway."""
    pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
    keyed = hashlib.blake2b(pack(list(PROVIDED_KEYS)), digest_size=HASH_SIZE)
    # a map of the items packs as the array of values plus every key (both headers are 1 byte)
    key_bytes = sum(len(pack(k)) for k in PROVIDED_KEYS)
    dump = 0

    def leaves() -> Iterator[tuple[str, bytes]]:
        nonlocal dump
        copy = keyed.copy
        for code, values in iter_provided_raw(tier, municipality):
            packed = pack(values)
            dump += len(packed) + key_bytes
            hasher = copy()
            hasher.update(packed)
            yield code, hasher.digest()

    tree = DigestTree.build(leaves(), depth)
    return tree, dump


def provided_view(tier: str, municipality: str, codes: Iterable[str]) -> list[dict[str, Any]]:
    """The canonical provided dicts of `codes` in the same view the tree hashes (what a
    consistency check fetches for the records that differ)."""
    return [
        dict(zip(PROVIDED_KEYS, v, strict=True))
        for _, v in iter_provided_raw(tier, municipality, codes)
    ]


# --- the raw-row view --------------------------------------------------------------------------

PROVIDED_KEYS: tuple[str, ...] = tuple(sorted(PROVIDED_FIELDS))
"""The canonical key order (leaf_hash sorts the items)."""

_CODE_AT = PROVIDED_KEYS.index("resident_code")
_TABLES = {
    "cs": ("identity", None),
    "prefecture": ("prefecture_identity", "prefecture_identity_history"),
    "national": ("national_identity", "national_identity_history"),
}


def iter_provided_raw(
    tier: str,
    municipality: str,
    codes: Iterable[str] | None = None,
    *,
    moved_on: bool = True,
    batch: int = 20_000,
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(住民票コード, values in PROVIDED_KEYS order) straight from the rows, without dataclasses.

    The values are exactly those of ``provided_to_dict`` (ISO dates, enum values, ints, None)
    — SQLite stores them that way already; PostgreSQL's DATE columns are turned into ISO text —
    at a fraction of the cost (a city is a million rows, and a check runs at three tiers).

    The view of a municipality at a tier: every current row with its 市町村コード (消除者 included),
    plus — when `moved_on` — for a person whose current row at the tier now belongs to another
    municipality (転出 to a city whose notices reached this tier), the last version this
    municipality sent, taken from the tier's history. That is what the old city's CS still
    holds (its 消除 record), so a person who moved on is not reported as missing. A current row
    that is simply absent stays absent: history never hides a deleted row.
    """
    from store.db import current_database, is_postgresql, translate_errors

    try:
        table, history = _TABLES[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}") from None
    db = current_database()
    p = db.param
    pg = is_postgresql(db)
    fix = _fix_dates if pg else None
    cols = ", ".join(f'"t"."{k}"' for k in PROVIDED_KEYS)

    def rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with translate_errors():
            return db.execute_sql(sql, params).fetchall()

    wanted = sorted(set(codes)) if codes is not None else None
    if wanted is None:
        sql = (
            f'SELECT {cols}, "t"."id" FROM "{table}" AS "t" WHERE "t"."municipality_code" = {p}'
            f' AND "t"."id" > {p} ORDER BY "t"."id" LIMIT {int(batch)}'
        )
        last = 0
        while True:
            got = rows(sql, (municipality, last))
            for row in got:
                values = row[:-1] if fix is None else fix(row[:-1])
                yield values[_CODE_AT], values
            if len(got) < batch:
                break
            last = got[-1][-1]
    else:
        for chunk in _chunks(wanted, 500):
            marks = ", ".join([p] * len(chunk))
            sql = (
                f'SELECT {cols} FROM "{table}" AS "t" WHERE "t"."municipality_code" = {p}'
                f' AND "t"."resident_code" IN ({marks}) ORDER BY "t"."resident_code"'
            )
            for row in rows(sql, (municipality, *chunk)):
                values = row if fix is None else fix(row)
                yield values[_CODE_AT], values
    if history is None or not moved_on:
        return
    yield from _moved_on(db, table, history, cols, municipality, wanted, fix)


def _moved_on(
    db: Any,
    table: str,
    history: str,
    cols: str,
    municipality: str,
    wanted: list[str] | None,
    fix: Any,
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    from store.db import translate_errors

    p = db.param
    base = (
        f'SELECT {cols} FROM "{history}" AS "t" JOIN "{table}" AS "c"'
        f' ON "c"."resident_code" = "t"."resident_code"'
        f' WHERE "t"."municipality_code" = {p} AND "c"."municipality_code" <> {p}'
    )
    order = ' ORDER BY "t"."resident_code", "t"."history_no"'
    queries: list[tuple[str, tuple[Any, ...]]] = []
    if wanted is None:
        queries.append((base + order, (municipality, municipality)))
    else:
        for chunk in _chunks(wanted, 500):
            marks = ", ".join([p] * len(chunk))
            queries.append(
                (
                    f'{base} AND "t"."resident_code" IN ({marks}){order}',
                    (municipality, municipality, *chunk),
                )
            )
    for sql, params in queries:
        with translate_errors():
            got = db.execute_sql(sql, params).fetchall()
        latest: dict[str, tuple[Any, ...]] = {}
        for row in got:  # ordered by history_no: the last one per code wins
            latest[row[_CODE_AT]] = row
        for code, row in latest.items():
            yield code, (row if fix is None else fix(row))


def _fix_dates(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(v.isoformat() if type(v) is date else v for v in row)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _iter_tier(tier: str, municipality: str, batch: int = 5_000) -> Iterable[Any]:
    """Stream a tier's provided records of one municipality as dataclasses (the reference path
    `iter_provided_raw` is checked against)."""
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
