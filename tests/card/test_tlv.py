"""券面事項 TLV: golden layouts from the public traces, round trips and hostile bytes."""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.card.errors import MalformedCardData
from tui.card.tlv import (
    Attributes,
    encode_attributes,
    encode_my_number,
    encode_resident_code,
    object_length,
    parse_attributes,
    parse_my_number,
    parse_resident_code,
)

# --- golden bytes (layout of cards.md §1.5, written out by hand) ---------------------------------


def test_my_number_file_matches_the_real_card_layout() -> None:
    expected = bytes.fromhex("FF100C") + b"123456789018" + bytes.fromhex("FFFF")
    assert encode_my_number("123456789018") == expected
    assert len(expected) == 17
    assert parse_my_number(expected) == "123456789018"


def test_my_number_parses_without_filler_and_with_zero_filler() -> None:
    body = bytes.fromhex("FF100C") + b"000000000019"
    assert parse_my_number(body) == "000000000019"
    assert parse_my_number(body + b"\x00\x00\x00") == "000000000019"


def test_attributes_offset_table_points_at_each_object() -> None:
    # FF20 len | DF21 08 <offsets> | DF22 01 'A' | DF23 01 'B' | DF24 08 date | DF25 01 '1'
    # header 3 + table 11 = 14 -> DF22 at 14, DF23 at 18, DF24 at 22, DF25 at 33; inner = 34
    golden = (
        bytes.fromhex("FF2022")
        + bytes.fromhex("DF2108")
        + struct.pack(">4H", 14, 18, 22, 33)
        + bytes.fromhex("DF220141")
        + bytes.fromhex("DF230142")
        + bytes.fromhex("DF2408")
        + b"20000229"
        + bytes.fromhex("DF250131")
    )
    attrs = Attributes("A", "B", "20000229", "1")
    assert encode_attributes(attrs) == golden
    assert parse_attributes(golden + b"\xff" * 20) == attrs


def test_long_attributes_use_two_byte_lengths() -> None:
    name = "寿限無" * 50  # 450 bytes of UTF-8: DF22 needs 82 xx xx, FF20 too
    data = encode_attributes(Attributes(name, "仙台市", "19700101", "9"))
    assert data[:3] == b"\xff\x20\x82"
    assert object_length(data[:7]) == len(data)
    assert parse_attributes(data).name == name


def test_resident_code_file_is_ours_in_the_same_style() -> None:
    data = encode_resident_code("12345678903")
    assert data == bytes.fromhex("FF100B") + b"12345678903" + bytes.fromhex("FFFF")
    assert parse_resident_code(data) == "12345678903"


def test_number_files_are_not_interchangeable() -> None:
    with pytest.raises(MalformedCardData):
        parse_resident_code(encode_my_number("123456789018"))
    with pytest.raises(MalformedCardData):
        parse_my_number(encode_resident_code("12345678903"))


# --- malformed files -----------------------------------------------------------------------------

GOOD = encode_attributes(Attributes("仙台　花子", "宮城県仙台市", "19900401", "2"))


def _with_offsets(data: bytes, offsets: tuple[int, int, int, int]) -> bytes:
    return data[:6] + struct.pack(">4H", *offsets) + data[14:]


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("offset table shifted", _with_offsets(GOOD, (15, 32, 50, 61))),
        ("offset table all zero", _with_offsets(GOOD, (0, 0, 0, 0))),
        ("truncated in the address", GOOD[:25]),
        ("truncated header", GOOD[:2]),
        ("empty file", b""),
        ("all filler", b"\xff" * 64),
        ("garbage after the object", GOOD + b"\x01"),
        ("wrong outer tag", b"\xff\x21" + GOOD[2:]),
        ("bad length form", b"\xff\x20\x83\x00\x00\x10" + GOOD[3:]),
        ("invalid UTF-8 name", GOOD.replace("花".encode(), b"\xff\xfe\xfd")),
        ("birth date 19900431", GOOD.replace(b"19900401", b"19900431")),
        ("birth date not digits", GOOD.replace(b"19900401", b"1990-4-1")),
        ("sex code 3", GOOD[:-1] + b"3"),
    ],
)
def test_malformed_attributes_raise_malformed_card_data(label: str, data: bytes) -> None:
    with pytest.raises(MalformedCardData) as exc:
        parse_attributes(data)
    assert exc.value.detail, label
    assert exc.value.title == "カードのデータが不正です"


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("FF100C") + b"12345678901",  # one digit short, length byte lies
        bytes.fromhex("FF100B") + b"12345678901",  # 11 digits under the 12-digit tag
        bytes.fromhex("FF100C") + b"12345678901A",
        bytes.fromhex("FF100C") + b"123456789018" + b"\xff\x41",
        bytes.fromhex("FF20") + b"\x0c" + b"123456789018",
    ],
)
def test_malformed_my_number_raises_malformed_card_data(data: bytes) -> None:
    with pytest.raises(MalformedCardData):
        parse_my_number(data)


def test_builders_refuse_bad_input() -> None:
    with pytest.raises(ValueError):
        encode_my_number("12345678901")
    with pytest.raises(ValueError):
        encode_attributes(Attributes("", "住所", "19900101", "1"))
    with pytest.raises(ValueError):
        encode_attributes(Attributes("氏名\n", "住所", "19900101", "1"))
    with pytest.raises(ValueError):
        encode_attributes(Attributes("氏名", "住所", "19900230", "1"))
    with pytest.raises(ValueError):
        encode_attributes(Attributes("氏名", "住所" * 6000, "19900101", "1"))


# --- properties ----------------------------------------------------------------------------------

GAIJI = "𠮷髙﨑邉邊齋𡈽𩸽葛\U000e0100辻\U000e0100"
KATAKANA_FOREIGN = "スミス　ジョン　ウィリアム"
ROMAN = "GARCÍA MÁRQUEZ GABRIEL JOSÉ"

text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cc", "Cs")),
        st.sampled_from(GAIJI + KATAKANA_FOREIGN + ROMAN + "　０１２３４５６７８９－"),
    ),
    min_size=1,
    max_size=120,
)
dates = st.dates(min_value=dt.date(1, 1, 1)).map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}")


@settings(max_examples=300)
@given(name=text, address=text, birth=dates, sex=st.sampled_from("0129"), filler=st.integers(0, 40))
def test_attributes_round_trip(name: str, address: str, birth: str, sex: str, filler: int) -> None:
    attrs = Attributes(name, address, birth, sex)
    data = encode_attributes(attrs)
    assert object_length(data[:7]) == len(data)
    assert parse_attributes(data + b"\xff" * filler) == attrs


@pytest.mark.parametrize(
    ("name", "address"),
    [
        (
            "寿限無寿限無五劫の擦り切れ海砂利水魚の水行末雲来末風来末食う寝る処に住む処" * 3,
            "東京都",
        ),
        ("髙橋　𠮷太郎", "宮城県仙台市𠮷野町１丁目２番地の３　﨑山ハイツ１０１号"),
        (KATAKANA_FOREIGN, "宮城県仙台市青葉区"),
        (ROMAN, "宮城県仙台市泉区"),
    ],
)
def test_named_awkward_cases_round_trip(name: str, address: str) -> None:
    attrs = Attributes(name, address, "19851231", "9")
    assert parse_attributes(encode_attributes(attrs)) == attrs


@settings(max_examples=300)
@given(st.from_regex(r"[0-9]{12}", fullmatch=True), st.integers(0, 8))
def test_my_number_round_trip(number: str, extra: int) -> None:
    assert parse_my_number(encode_my_number(number) + b"\xff" * extra) == number


@settings(max_examples=300)
@given(st.from_regex(r"[0-9]{11}", fullmatch=True))
def test_resident_code_round_trip(code: str) -> None:
    assert parse_resident_code(encode_resident_code(code)) == code


Parser = Callable[[bytes], object]
PARSERS: list[Parser] = [parse_attributes, parse_my_number, parse_resident_code]


@settings(max_examples=500)
@given(st.binary(max_size=300), st.sampled_from(PARSERS))
def test_random_bytes_only_ever_raise_malformed(data: bytes, parser: Parser) -> None:
    with contextlib.suppress(MalformedCardData):
        parser(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([GOOD, encode_my_number("123456789018")])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data.insert(i, draw(st.integers(0, 255)))
        elif data:
            del data[i]
    return bytes(data)


@settings(max_examples=500)
@given(mutated(), st.sampled_from(PARSERS))
def test_mutated_files_only_ever_raise_malformed(data: bytes, parser: Parser) -> None:
    with contextlib.suppress(MalformedCardData):
        parser(data)


@given(st.binary(max_size=10))
def test_object_length_on_any_header(head: bytes) -> None:
    try:
        n = object_length(head)
    except MalformedCardData:
        return
    assert n >= 2
