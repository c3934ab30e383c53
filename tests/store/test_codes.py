"""検査数字: known answers from cards.md §3 and mutation properties of the three mod-11 checks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.codes import (
    individual_number_check_digit,
    is_valid_individual_number,
    is_valid_municipality_code,
    is_valid_resident_code,
    municipality_code_check_digit,
    random_individual_number,
    random_resident_code,
    resident_code_check_digit,
)

# --- known answers (cards.md §3.1, §3.2 worked examples; 総務省 municipality code list) ---------


@pytest.mark.parametrize(
    ("base", "cd"), [("12345678901", 8), ("98320567321", 4), ("02345678901", 3)]
)
def test_individual_number_known_check_digits(base: str, cd: int) -> None:
    assert individual_number_check_digit(base) == cd


@pytest.mark.parametrize(
    "number", ["123456789018", "983205673214", "023456789013", "111111111118", "123456789000"]
)
def test_individual_number_known_valid(number: str) -> None:
    assert is_valid_individual_number(number)


@pytest.mark.parametrize(
    "number",
    [
        "983205673210",
        "123456789012",
        "12345678901",  # too short
        "1234567890188",  # too long
        "12345678901８",  # full-width digit
        "１２３４５６７８９０１８",  # all full-width
        "12345678901a",
        "",
    ],
)
def test_individual_number_known_invalid(number: str) -> None:
    assert not is_valid_individual_number(number)


@pytest.mark.parametrize(("base", "cd"), [("1234567890", 3), ("2472705960", 8)])
def test_resident_code_known_check_digits(base: str, cd: int) -> None:
    assert resident_code_check_digit(base) == cd


@pytest.mark.parametrize("code", ["12345678903", "24727059608", "24846016224"])
def test_resident_code_known_valid(code: str) -> None:
    assert is_valid_resident_code(code)


@pytest.mark.parametrize("code", ["12345678904", "24727059609", "2472705960", "247270596088"])
def test_resident_code_known_invalid(code: str) -> None:
    assert not is_valid_resident_code(code)


@pytest.mark.parametrize(
    "code",
    [
        "041009",  # 仙台市
        "042021",  # 石巻市
        "131016",  # 千代田区
        "011002",  # 札幌市
        "271004",  # 大阪市
        "041017",  # 仙台市青葉区
    ],
)
def test_municipality_code_known_valid(code: str) -> None:
    assert is_valid_municipality_code(code)
    assert municipality_code_check_digit(code[:5]) == int(code[5])


@pytest.mark.parametrize("code", ["041008", "131010", "04100", "0410090", "O41009"])
def test_municipality_code_known_invalid(code: str) -> None:
    assert not is_valid_municipality_code(code)


def test_check_digit_functions_refuse_malformed_bases() -> None:
    with pytest.raises(ValueError):
        individual_number_check_digit("1234567890")
    with pytest.raises(ValueError):
        resident_code_check_digit("12345678901")
    with pytest.raises(ValueError):
        municipality_code_check_digit("４１００９")


def test_random_generators_are_valid_and_reproducible() -> None:
    rng = random.Random(20240401)
    codes = [random_resident_code(rng) for _ in range(200)]
    numbers = [random_individual_number(rng) for _ in range(200)]
    assert all(is_valid_resident_code(c) for c in codes)
    assert all(is_valid_individual_number(n) for n in numbers)
    assert len(set(codes)) > 190  # random, not a constant
    again = random.Random(20240401)
    assert [random_resident_code(again) for _ in range(200)] == codes


# --- mutation properties ---------------------------------------------------------------------
# The reference below is written from the ordinance text (Pn counted from the least significant
# digit, Qn = n+1 for n ≤ 6, n−5 above), not from the code under test.


def _ordinance_remainder(base: str) -> int:
    total = 0
    for n, ch in enumerate(reversed(base), start=1):
        q = n + 1 if n <= 6 else n - 5
        total += int(ch) * q
    return total % 11


def _municipality_remainder(base: str) -> int:
    return sum(int(ch) * w for ch, w in zip(base, (6, 5, 4, 3, 2), strict=True)) % 11


def _mod11_cd(r: int) -> int:
    return 0 if r <= 1 else 11 - r


@dataclass(frozen=True)
class Scheme:
    name: str
    length: int
    valid: Callable[[str], bool]
    remainder: Callable[[str], int]
    cd_of_remainder: Callable[[int], int]
    colliding_remainders: frozenset[int]  # remainders that share a check digit


SCHEMES = [
    Scheme("個人番号", 12, is_valid_individual_number, _ordinance_remainder, _mod11_cd,
           frozenset({0, 1})),
    Scheme("住民票コード", 11, is_valid_resident_code, _ordinance_remainder, _mod11_cd,
           frozenset({0, 1})),
    Scheme("市町村コード", 6, is_valid_municipality_code, _municipality_remainder,
           lambda r: (11 - r) % 10, frozenset({0, 10})),
]  # fmt: skip


def _valid_number(scheme: Scheme, base: str) -> str:
    return base + str(scheme.cd_of_remainder(scheme.remainder(base)))


@st.composite
def scheme_and_number(draw: st.DrawFn) -> tuple[Scheme, str]:
    scheme = draw(st.sampled_from(SCHEMES))
    base = draw(st.text("0123456789", min_size=scheme.length - 1, max_size=scheme.length - 1))
    return scheme, _valid_number(scheme, base)


def _undetectable(scheme: Scheme, before: str, after: str) -> bool:
    """A change confined to the base escapes only if both remainders share a check digit."""
    r_old, r_new = scheme.remainder(before[:-1]), scheme.remainder(after[:-1])
    assert r_old != r_new  # weights are non-zero mod 11, so a base change always moves r
    return {r_old, r_new} <= scheme.colliding_remainders


@settings(max_examples=150)
@given(scheme_and_number())
def test_every_valid_number_is_accepted(case: tuple[Scheme, str]) -> None:
    scheme, number = case
    assert scheme.valid(number)


@settings(max_examples=300)
@given(scheme_and_number(), st.data())
def test_single_digit_change_is_rejected_unless_remainders_collide(
    case: tuple[Scheme, str], data: st.DataObject
) -> None:
    scheme, number = case
    pos = data.draw(st.integers(0, scheme.length - 1))
    new_digit = data.draw(st.sampled_from([d for d in "0123456789" if d != number[pos]]))
    mutated = number[:pos] + new_digit + number[pos + 1 :]
    if pos == scheme.length - 1:
        assert not scheme.valid(mutated)  # the check digit is a function of the base
    else:
        assert scheme.valid(mutated) == _undetectable(scheme, number, mutated)


@settings(max_examples=300)
@given(scheme_and_number(), st.data())
def test_adjacent_transposition_is_rejected_unless_remainders_collide(
    case: tuple[Scheme, str], data: st.DataObject
) -> None:
    scheme, number = case
    pos = data.draw(st.integers(0, scheme.length - 2))
    mutated = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2 :]
    if mutated == number:
        assert scheme.valid(mutated)
    elif pos == scheme.length - 2:
        # swapping the last base digit with the check digit: decided by the reference
        expected = scheme.cd_of_remainder(scheme.remainder(mutated[:-1])) == int(mutated[-1])
        assert scheme.valid(mutated) == expected
    else:
        assert scheme.valid(mutated) == _undetectable(scheme, number, mutated)


def test_colliding_remainders_really_slip_through() -> None:
    """The exception is real, not a hypothetical: find one and show it is accepted."""
    # base 00000000001 has remainder 2 (weight 2); we search a base with r = 0 and a neighbour
    # with r = 1 by brute force over the last two digits.
    for a in range(10):
        for b in range(10):
            base = f"000000000{a}{b}"
            if _ordinance_remainder(base) != 0:
                continue
            for c in range(10):
                neighbour = f"000000000{a}{c}"
                if _ordinance_remainder(neighbour) == 1:
                    assert is_valid_individual_number(base + "0")
                    assert is_valid_individual_number(neighbour + "0")
                    return
    pytest.fail("no colliding pair found")
