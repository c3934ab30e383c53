"""Consistency digests: equal inputs give equal trees; any change shows on the path to its leaf."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from store.digest import DigestTree, diff_leaves, field_differences, leaf_hash

codes = st.text(alphabet="0123456789", min_size=11, max_size=11)


def _records(n: int, seed: int = 0) -> dict[str, dict]:
    rng = random.Random(seed)
    out = {}
    for _ in range(n):
        code = f"{rng.randrange(10**11):011d}"
        out[code] = {"resident_code": code, "name_kanji": f"名{rng.randrange(1000)}", "sequence": 1}
    return out


def test_tree_is_independent_of_input_order() -> None:
    recs = _records(500)
    items = [(c, leaf_hash(r)) for c, r in recs.items()]
    a = DigestTree.build(items)
    b = DigestTree.build(list(reversed(items)))
    assert a.digest("") == b.digest("")
    assert a.total == 500


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=199), st.sampled_from(["edit", "delete", "sequence"]))
def test_a_single_change_changes_every_prefix_on_its_path_and_nothing_else(
    i: int, change: str
) -> None:
    recs = _records(200, seed=7)
    mine = DigestTree.build((c, leaf_hash(r)) for c, r in recs.items())
    code = sorted(recs)[i]
    theirs_recs = dict(recs)
    if change == "delete":
        del theirs_recs[code]
    elif change == "edit":
        theirs_recs[code] = {**recs[code], "name_kanji": "改ざん"}
    else:
        theirs_recs[code] = {**recs[code], "sequence": 2}
    theirs = DigestTree.build((c, leaf_hash(r)) for c, r in theirs_recs.items())
    for length in range(mine.depth + 1):
        assert mine.digest(code[:length]) != theirs.digest(code[:length])
    other = next(c for c in recs if c[:1] != code[:1])
    assert mine.digest(other[:1]) == theirs.digest(other[:1])
    diffs = diff_leaves(mine.leaves_under(code[:5]), theirs.leaves_under(code[:5]))
    assert [d.resident_code for d in diffs] == [code]
    assert diffs[0].kind == ("missing" if change == "delete" else "differs")


def test_field_differences_name_the_fields() -> None:
    a = {"resident_code": "1", "name_kanji": "甲", "address": "x"}
    assert field_differences(a, {**a, "address": "y"}) == ["address"]
    assert field_differences(a, None) == sorted(a)


@given(st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=5))
def test_leaf_hash_ignores_key_order(d: dict) -> None:
    assert leaf_hash(d) == leaf_hash(dict(reversed(list(d.items()))))
