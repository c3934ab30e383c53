"""カード読取 over the in-process transport: what a terminal gets back, and how it fails."""

from __future__ import annotations

import pytest

from tui.card import constants as c
from tui.card import errors as e
from tui.card.reader import (
    CardData,
    ensure_pin_usable,
    pin_tries_left,
    read_card_info,
    read_my_number_card,
    read_object,
    read_resident_code,
    select_ef,
)
from tui.card.tlv import Attributes, encode_attributes
from tui.card.virtual import CardEngine, EngineTransport

from .conftest import PIN_JUKI, PIN_KENHOJO, operator_image, resident_image


def transport(**changes: object) -> EngineTransport:
    return EngineTransport(CardEngine(resident_image(**changes)))


def test_correct_pin_reads_number_and_four_facts() -> None:
    img = resident_image()
    got = read_my_number_card(EngineTransport(CardEngine(img)), PIN_KENHOJO)
    assert got == CardData(img.individual_number, img.name, img.address, img.birth_date, img.sex)
    assert img.individual_number not in repr(got)


def test_resident_code_needs_the_juki_pin() -> None:
    t = transport()
    assert read_resident_code(t, PIN_JUKI) == "12345678903"
    with pytest.raises(e.WrongPin) as exc:
        read_resident_code(t, PIN_KENHOJO)
    assert exc.value.tries_left == 2


def test_wrong_pins_count_down_then_block() -> None:
    t = transport()
    for left in (2, 1):
        with pytest.raises(e.WrongPin) as exc:
            read_my_number_card(t, "0000")
        assert exc.value.tries_left == left
        assert pin_tries_left(t, c.PinKind.KENHOJO) == left
    with pytest.raises(e.PinBlocked):
        read_my_number_card(t, "0000")
    with pytest.raises(e.PinBlocked):
        read_my_number_card(t, PIN_KENHOJO)
    assert pin_tries_left(t, c.PinKind.KENHOJO) == 0
    with pytest.raises(e.PinBlocked):
        ensure_pin_usable(t, c.PinKind.KENHOJO)
    assert read_resident_code(t, PIN_JUKI) == "12345678903"  # the other key is unaffected


def test_malformed_pin_is_refused_before_the_card_sees_it() -> None:
    t = transport()
    for bad in ("123", "12345", "12a4", "１２３４"):
        with pytest.raises(e.InvalidPinFormat):
            read_my_number_card(t, bad)
    assert t.sent == []
    assert pin_tries_left(t, c.PinKind.KENHOJO) == 3


def test_long_attributes_are_read_in_chunks_of_at_most_255() -> None:
    name = "寿限無寿限無五劫の擦り切れ海砂利水魚の" * 12  # ~ 700 bytes
    t = transport(name=name, address="宮城県仙台市𠮷野町１－２－３　髙﨑ビル")
    got = read_my_number_card(t, PIN_KENHOJO)
    assert got.name == name and got.address == "宮城県仙台市𠮷野町１－２－３　髙﨑ビル"
    reads = [a for a in t.sent if a[1] == c.INS_READ_BINARY]
    les = [a[4] or 256 for a in reads]
    assert les[0] == c.HEADER_PROBE_LEN
    assert all(le <= 255 for le in les)
    assert len(reads) >= 2 + 1 + 3  # probe+rest for EF1, probe + >= 3 chunks for EF2
    offsets = [(a[2] << 8) | a[3] for a in reads if (a[2] << 8) | a[3]]
    assert offsets == sorted(offsets)


def test_foreign_resident_name_round_trips() -> None:
    t = transport(name="スミス　ジョン　ウィリアム", address="宮城県仙台市宮城野区", sex="1")
    assert read_my_number_card(t, PIN_KENHOJO).name == "スミス　ジョン　ウィリアム"


@pytest.mark.parametrize(
    "raw",
    [
        # offset table off by one
        encode_attributes(Attributes("仙台　花子", "宮城県", "19900401", "2"))[:6]
        + bytes.fromhex("000F0020002A0035")
        + encode_attributes(Attributes("仙台　花子", "宮城県", "19900401", "2"))[14:],
        # truncated: the object says it is longer than the file
        encode_attributes(Attributes("仙台　花子", "宮城県", "19900401", "2"))[:30],
        b"",
    ],
    ids=["bad-offsets", "truncated", "empty"],
)
def test_malformed_ef_gives_malformed_card_data(raw: bytes) -> None:
    t = transport(raw_files={(c.AID_KENHOJO, c.EF_ATTRIBUTES): raw})
    with pytest.raises(e.MalformedCardData):
        read_my_number_card(t, PIN_KENHOJO)


def test_malformed_number_file() -> None:
    t = transport(raw_files={(c.AID_KENHOJO, c.EF_MY_NUMBER): b"\xff\x10\x0c12345678901X\xff\xff"})
    with pytest.raises(e.MalformedCardData):
        read_my_number_card(t, PIN_KENHOJO)


def test_operator_card_is_not_a_my_number_card() -> None:
    t = EngineTransport(CardEngine(operator_image()))
    with pytest.raises(e.NotMyNumberCard):
        read_my_number_card(t, PIN_KENHOJO)


def test_card_info_from_the_common_ap() -> None:
    info = read_card_info(transport())
    assert (info.serial, info.municipality_code5, info.expires) == (
        "000000000000123",
        "04100",
        "20341231",
    )


class ShortEndCard:
    """A card that ends files with ISO 6282 (fewer bytes than Le) rather than 6B00."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if apdu[1] == c.INS_SELECT:
            return b"", 0x9000
        off = (apdu[2] << 8) | apdu[3]
        le = apdu[4] or 256
        chunk = self.content[off : off + le]
        if off >= len(self.content):
            return b"", 0x6282
        return chunk, 0x6282 if len(chunk) < le else 0x9000


def test_6282_end_of_file_is_handled() -> None:
    body = encode_attributes(Attributes("A" * 300, "B", "20000101", "1"))
    t = ShortEndCard(body)
    select_ef(t, c.EF_ATTRIBUTES)
    assert read_object(t) == body
    with pytest.raises(e.MalformedCardData):
        read_object(ShortEndCard(body[:-1]))


def test_card_sending_more_than_le_is_malformed() -> None:
    class Chatty:
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return b"\xff\x20\x02\x00\x00\x00\x00\x00", 0x9000

    with pytest.raises(e.MalformedCardData):
        read_object(Chatty())
