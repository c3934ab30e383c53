"""検査数字 (check digits): 個人番号, 住民票コード and 全国地方公共団体コード.

All three are position-weighted modulus-11 checks. They catch every single-digit error and
every adjacent transposition, except where two different weighted-sum remainders map to the
same check digit (remainders 0 and 1 both give 0 for the 個人番号 and 住民票コード; 0 and 10
both give 1 for the municipality code). The tests compute that exception rather than skip it.
"""

from __future__ import annotations

import random

_INDIVIDUAL_NUMBER_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_RESIDENT_CODE_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_MUNICIPALITY_WEIGHTS = (6, 5, 4, 3, 2)


def _digits(s: str, length: int) -> tuple[int, ...]:
    """The digits of ``s`` if it is exactly ``length`` ASCII digits; else ValueError.

    ``str.isdigit`` would accept full-width and other Unicode digits; codes on the wire are
    ASCII only.
    """
    if not isinstance(s, str) or len(s) != length or not s.isascii() or not s.isdigit():
        raise ValueError(f"expected {length} ASCII digits")
    return tuple(ord(c) - 48 for c in s)


def _weighted_remainder(digits: tuple[int, ...], weights: tuple[int, ...]) -> int:
    return sum(d * w for d, w in zip(digits, weights, strict=True)) % 11


def _mod11_check_digit(remainder: int) -> int:
    return 0 if remainder <= 1 else 11 - remainder


def individual_number_check_digit(first11: str) -> int:
    """個人番号 check digit (総務省令第八十五号 第5条).

    cd = 11 − (Σ Pn×Qn mod 11), or 0 when the remainder is 0 or 1; read left to right the
    weights are 6 5 4 3 2 7 6 5 4 3 2.
    """
    return _mod11_check_digit(_weighted_remainder(_digits(first11, 11), _INDIVIDUAL_NUMBER_WEIGHTS))


def is_valid_individual_number(s: str) -> bool:
    """12 ASCII digits whose last digit is the check digit of the first 11."""
    try:
        digits = _digits(s, 12)
    except ValueError:
        return False
    return individual_number_check_digit(s[:11]) == digits[11]


def resident_code_check_digit(first10: str) -> int:
    """住民票コード check digit — an ASSUMED rule (cards.md §3.2).

    The official rule (平成14年総務省告示第436号) was not available. This applies the 個人番号
    formula to 10 digits (weights 5 4 3 2 7 6 5 4 3 2, remainder ≤ 1 → 0), which public code
    uses for both and which the known sample codes pass. It lives in this one function so that
    it can be swapped once the 告示 text is checked.
    """
    return _mod11_check_digit(_weighted_remainder(_digits(first10, 10), _RESIDENT_CODE_WEIGHTS))


def is_valid_resident_code(s: str) -> bool:
    """11 ASCII digits whose last digit is the (assumed) check digit of the first 10.

    Written out (not through `resident_code_check_digit`): every update and query checks one."""
    if type(s) is not str or len(s) != 11 or not s.isascii() or not s.isdigit():
        return False
    digits = s[:10]
    remainder = (
        sum((ord(c) - 48) * w for c, w in zip(digits, _RESIDENT_CODE_WEIGHTS, strict=True)) % 11
    )
    return _mod11_check_digit(remainder) == ord(s[10]) - 48


def municipality_code_check_digit(first5: str) -> int:
    """全国地方公共団体コード check digit (6th digit).

    Weights 6 5 4 3 2 on the first five digits, r = sum mod 11, cd = the last digit of 11 − r
    (so r = 1 gives 0 and r = 0 gives 1, the same as r = 10).
    """
    return (11 - _weighted_remainder(_digits(first5, 5), _MUNICIPALITY_WEIGHTS)) % 10


def is_valid_municipality_code(s: str) -> bool:
    """6 ASCII digits with a correct check digit (e.g. 041009 仙台市)."""
    try:
        digits = _digits(s, 6)
    except ValueError:
        return False
    return municipality_code_check_digit(s[:5]) == digits[5]


def _random_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def random_resident_code(rng: random.Random) -> str:
    """A valid random 住民票コード: 10 random digits and the check digit.

    Uniqueness is the caller's job (national allocates codes and checks them against its file).
    """
    base = _random_digits(rng, 10)
    return base + str(resident_code_check_digit(base))


def random_individual_number(rng: random.Random) -> str:
    """A valid random 個人番号: 11 random digits and the check digit (uniqueness: caller)."""
    base = _random_digits(rng, 11)
    return base + str(individual_number_check_digit(base))
