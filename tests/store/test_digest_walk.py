"""The consistency walk in-process (no broker): it finds exactly the differing records, asks only
about differing prefixes, and the raw-row view it hashes equals the dataclass view."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

import msgpack
import peewee
import pytest

from store import identity
from store.digest import (
    PROVIDED_KEYS,
    DigestTree,
    iter_provided_raw,
    leaf_hash,
    provided_items,
    provided_view,
    scan,
    walk,
)
from store.records import ChangeReason, RecordStatus, provided_from, replace
from tests.store.conftest import MakeIdentity, full_identity


def _records(n: int, seed: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        code = f"{rng.randrange(10**11):011d}"
        out[code] = {
            "resident_code": code,
            "name_kanji": f"名{rng.randrange(10**6)}",
            "address": f"仙台市{rng.randrange(1000)}",
            "sequence": rng.randrange(1, 100),
        }
    return out


def _tree(recs: dict[str, dict[str, Any]]) -> DigestTree:
    return DigestTree.build((c, leaf_hash(r)) for c, r in recs.items())


class CountingPeer:
    """A peer answering from its own tree, counting questions and prefixes asked."""

    def __init__(self, tree: DigestTree) -> None:
        self.tree = tree
        self.questions = 0
        self.prefixes = 0

    def __call__(self, prefixes: list[str], leaves: bool) -> dict[str, Any]:
        self.questions += 1
        self.prefixes += len(prefixes)
        return self.tree.answer(prefixes, leaves)


def _corrupt(
    recs: dict[str, dict[str, Any]], rng: random.Random, n: int
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    theirs = dict(recs)
    expected: dict[str, str] = {}
    for i, code in enumerate(rng.sample(sorted(recs), n)):
        change = ("edit", "delete", "sequence")[i % 3]
        if change == "delete":
            del theirs[code]
            expected[code] = "missing"
        elif change == "edit":
            theirs[code] = {**recs[code], "address": "改ざん"}
            expected[code] = "differs"
        else:
            theirs[code] = {**recs[code], "sequence": recs[code]["sequence"] + 1}
            expected[code] = "differs"
    for _ in range(max(1, n // 5)):
        code = f"{rng.randrange(10**11):011d}"
        if code not in recs:
            theirs[code] = {"resident_code": code, "name_kanji": "余分", "sequence": 1}
            expected[code] = "extra"
    return theirs, expected


@pytest.mark.parametrize("n", [1, 7, 25])
def test_walk_finds_exactly_the_changed_records_with_their_kinds(n: int) -> None:
    rng = random.Random(n)
    recs = _records(20_000, seed=n)
    theirs, expected = _corrupt(recs, rng, n)
    peer = CountingPeer(_tree(theirs))
    result = walk(_tree(recs), peer)
    assert {d.resident_code: d.kind for d in result.differences} == expected
    assert result.peer_total == len(theirs)
    # root+level 1, levels 2..5, then the leaves: one question each
    assert peer.questions == 6
    assert [s.level for s in result.steps] == [1, 2, 3, 4, 5, -1]
    # only children of differing prefixes were asked about: ≤ 10 per differing record per level
    assert peer.prefixes <= 11 + len(expected) * 10 * 4 + len(expected)


def test_equal_trees_cost_one_question() -> None:
    recs = _records(5_000, seed=3)
    peer = CountingPeer(_tree(dict(reversed(list(recs.items())))))
    result = walk(_tree(recs), peer)
    assert result.differences == []
    assert peer.questions == 1 and peer.prefixes == 11


def test_an_empty_peer_settles_everything_as_missing_without_descending() -> None:
    recs = _records(3_000, seed=4)
    peer = CountingPeer(_tree({}))
    result = walk(_tree(recs), peer)
    assert {d.resident_code for d in result.differences} == set(recs)
    assert {d.kind for d in result.differences} == {"missing"}
    assert peer.questions == 1


def test_everything_extra_at_the_peer_is_fetched_as_leaves() -> None:
    recs = _records(3_000, seed=5)
    peer = CountingPeer(_tree(recs))
    result = walk(_tree({}), peer)
    assert {d.resident_code for d in result.differences} == set(recs)
    assert {d.kind for d in result.differences} == {"extra"}
    assert peer.questions == 2  # the first question, then every leaf under the ten digits


def test_small_batches_split_questions_but_find_the_same() -> None:
    rng = random.Random(9)
    recs = _records(10_000, seed=9)
    theirs, expected = _corrupt(recs, rng, 40)
    peer = CountingPeer(_tree(theirs))
    result = walk(_tree(recs), peer, max_prefixes=37, max_leaves=5)
    assert {d.resident_code: d.kind for d in result.differences} == expected
    assert peer.questions > 6
    assert all(s.questions >= 1 for s in result.steps)


def test_leaves_under_any_prefix_match_a_plain_filter() -> None:
    recs = _records(2_000, seed=11)
    tree = _tree(recs)
    hashes = {c: leaf_hash(r) for c, r in recs.items()}
    assert tree.leaves == hashes
    code = sorted(recs)[17]
    for length in range(12):
        p = code[:length]
        assert tree.leaves_under(p) == {c: h for c, h in hashes.items() if c.startswith(p)}


def test_walk_transfers_far_less_than_the_records() -> None:
    rng = random.Random(21)
    recs = _records(50_000, seed=21)
    theirs, expected = _corrupt(recs, rng, 25)
    sizes = 0
    tree = _tree(theirs)

    def ask(prefixes: list[str], leaves: bool) -> dict[str, Any]:
        nonlocal sizes
        reply = tree.answer(prefixes, leaves)
        sizes += len(msgpack.packb(prefixes)) + len(msgpack.packb(reply))
        return reply

    result = walk(_tree(recs), ask)
    assert len(result.differences) == len(expected)
    dump = sum(len(msgpack.packb(r)) for r in recs.values())
    assert sizes * 20 < dump


# --- the raw-row view against the dataclass view, on SQLite and PostgreSQL ----------------------


def _population(make: MakeIdentity, n: int) -> list[Any]:
    rng = random.Random(5)
    people = [full_identity(make, municipality_code="041009")]
    for i in range(n):
        removed = i % 7 == 0
        people.append(
            make(
                name_kanji=f"住民　{i}",
                birth_date=date(1930 + i % 90, 1 + i % 12, 1 + i % 28),
                individual_number=None if i % 5 == 0 else f"{rng.randrange(10**12):012d}",
                change_reason=ChangeReason.DEATH if removed else ChangeReason.BIRTH,
                record_status=RecordStatus.REMOVED if removed else RecordStatus.CURRENT,
                sequence=i + 1,
                old_resident_code=None,
            )
        )
    return people


def test_raw_view_equals_the_dataclass_view_at_every_tier(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    people = _population(make_identity, 60)
    other = make_identity(municipality_code="042021")
    identity.bulk_load_identities([*people, other])
    for tier in ("prefecture", "national"):
        for p in [*people, other]:
            identity.save_provided(tier, provided_from(p))  # type: ignore[arg-type]
    for tier in ("cs", "prefecture", "national"):
        reference = dict(provided_items(tier, "041009"))
        raw = {
            c: dict(zip(PROVIDED_KEYS, v, strict=True))
            for c, v in iter_provided_raw(tier, "041009")
        }
        assert raw == reference
        assert len(raw) == len(people) and other.resident_code not in raw
        # and the hashes the tree is built from are leaf_hash of the reference dicts
        tree, dump = scan(tier, "041009")
        assert tree.leaves == {c: leaf_hash(d) for c, d in reference.items()}
        assert dump == sum(len(msgpack.packb(d, use_bin_type=True)) for d in reference.values())
        some = sorted(reference)[::9]
        assert {r["resident_code"]: r for r in provided_view(tier, "041009", some)} == {
            c: reference[c] for c in some
        }


def test_a_person_who_moved_on_is_compared_by_the_last_version_this_city_sent(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    person = make_identity(sequence=3)
    moved = replace(
        person,
        change_reason=ChangeReason.MOVE_OUT,
        record_status=RecordStatus.REMOVED,
        sequence=4,
    )
    deleted = make_identity(sequence=1)
    for tier in ("prefecture", "national"):
        identity.save_provided(tier, provided_from(person), recorded_at=at)  # type: ignore[arg-type]
        identity.save_provided(tier, provided_from(moved), recorded_at=at)  # type: ignore[arg-type]
        # 石巻市's 転入 supersedes it as the tier's current row
        identity.save_provided(  # type: ignore[arg-type]
            tier,
            provided_from(
                replace(
                    person,
                    municipality_code="042021",
                    change_reason=ChangeReason.MOVE_IN,
                    sequence=1,
                )
            ),
            recorded_at=at,
        )
        identity.save_provided(tier, provided_from(deleted), recorded_at=at)  # type: ignore[arg-type]
    db.execute_sql(
        f"DELETE FROM prefecture_identity WHERE resident_code = {db.param}",
        (deleted.resident_code,),
    )
    view = {
        c: dict(zip(PROVIDED_KEYS, v, strict=True))
        for c, v in iter_provided_raw("prefecture", "041009")
    }
    # the moved person appears as 仙台市's 転出 (what 仙台市's CS holds); the row deleted behind
    # the application's back does not come back from history
    assert set(view) == {person.resident_code}
    assert view[person.resident_code]["change_reason"] == "転出"
    assert view[person.resident_code]["sequence"] == 4
    assert provided_view("prefecture", "041009", [person.resident_code, deleted.resident_code]) == [
        view[person.resident_code]
    ]
    national = {c for c, _ in iter_provided_raw("national", "041009")}
    assert national == {person.resident_code, deleted.resident_code}
    assert {c for c, _ in iter_provided_raw("national", "041009", moved_on=False)} == {
        deleted.resident_code
    }
