"""Card tests through the real stack: pyscard -> pcscd -> vpcd -> our virtual card process.

Slot 0 holds the resident's card, slot 1 the operator's card.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tui.card import constants as c
from tui.card import errors as e
from tui.card import pcsc, slots
from tui.card.image import MyNumberImage, load_image
from tui.card.operator import operator_card_id, sign_challenge, verify_challenge
from tui.card.reader import (
    CardData,
    pin_tries_left,
    read_my_number_card,
    read_resident_code,
)
from tui.card.tlv import Attributes, encode_attributes

from .conftest import PIN_JUKI, PIN_KENHOJO, Cards, operator_image, resident_image

pytestmark = pytest.mark.pcsc

RESIDENT = c.SLOT_RESIDENT
OPERATOR = c.SLOT_OPERATOR


def test_correct_pin_reads_what_the_image_holds(cards: Cards) -> None:
    img = resident_image()
    cards.insert(cards.write(img), RESIDENT)
    with pcsc.PcscTransport(RESIDENT) as t:
        assert t.atr == c.ATR_MY_NUMBER
        got = read_my_number_card(t, PIN_KENHOJO)
        code = read_resident_code(t, PIN_JUKI)
    assert got == CardData(img.individual_number, img.name, img.address, img.birth_date, img.sex)
    assert code == img.resident_code


def test_wrong_pin_reports_tries_left_and_is_persisted(cards: Cards) -> None:
    path = cards.write(resident_image())
    cards.insert(path, RESIDENT)
    with pcsc.PcscTransport(RESIDENT) as t:
        with pytest.raises(e.WrongPin) as exc:
            read_my_number_card(t, "0000")
        assert exc.value.tries_left == 2
        assert pin_tries_left(t, c.PinKind.KENHOJO) == 2
    img = load_image(path)
    assert isinstance(img, MyNumberImage) and img.tries_left[c.PinKind.KENHOJO] == 2


def test_blocked_pin_stays_blocked_in_a_fresh_card_process(cards: Cards) -> None:
    path = cards.write(resident_image())
    first = cards.insert(path, RESIDENT)
    with pcsc.PcscTransport(RESIDENT) as t:
        for left in (2, 1):
            with pytest.raises(e.WrongPin) as exc:
                read_my_number_card(t, "0000")
            assert exc.value.tries_left == left
        with pytest.raises(e.PinBlocked) as blocked:
            read_my_number_card(t, "0000")
        assert blocked.value.detail == "SW=63C0"
    cards.remove(RESIDENT)
    second = cards.insert(path, RESIDENT)
    assert second != first
    with pcsc.PcscTransport(RESIDENT) as t:
        with pytest.raises(e.PinBlocked) as again:
            read_my_number_card(t, PIN_KENHOJO)  # the right PIN no longer helps
        assert again.value.detail == "SW=6984"
        assert pin_tries_left(t, c.PinKind.KENHOJO) == 0
        assert read_resident_code(t, PIN_JUKI) == "12345678903"


class RemoveAfter:
    """Transport that pulls the card (kills the vicc) after ``n`` APDUs, then carries on."""

    def __init__(self, inner: pcsc.PcscTransport, cards: Cards, n: int) -> None:
        self.inner, self.cards, self.n = inner, cards, n
        self.count = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.count += 1
        if self.count == self.n:
            self.cards.remove(RESIDENT)
        return self.inner.transmit(apdu)


@pytest.mark.parametrize("after", [2, 5])
def test_removal_mid_read_is_card_removed(cards: Cards, after: int) -> None:
    cards.insert(cards.write(resident_image()), RESIDENT)
    with pcsc.PcscTransport(RESIDENT) as t:
        wrapped = RemoveAfter(t, cards, after)
        with pytest.raises(e.CardRemoved):
            read_my_number_card(wrapped, PIN_KENHOJO)
        assert wrapped.count == after  # it failed on the first APDU after the removal
    with pytest.raises(e.NoCard):
        pcsc.PcscTransport(RESIDENT, timeout=0.3)


def test_no_card_in_the_reader(cards: Cards) -> None:
    cards.remove(RESIDENT)
    with pytest.raises(e.NoCard):
        pcsc.wait_for_card(RESIDENT, 0.3)


def test_unknown_reader_is_reader_unavailable(pcscd: None) -> None:
    with pytest.raises(e.ReaderUnavailable):
        pcsc.PcscTransport("No Such Reader 00 00", timeout=0.1)


def test_awkward_names_round_trip_through_the_stack(cards: Cards) -> None:
    long_name = "寿限無寿限無五劫の擦り切れ海砂利水魚の水行末雲来末風来末" * 5
    cases = [
        (long_name, "宮城県仙台市青葉区一番町四丁目１番２５号"),
        ("髙橋　𠮷太郎", "宮城県仙台市𠮷岡町１－２　﨑山ハイツ葛\U000e0100"),
        ("スミス　ジョン　ウィリアム", "宮城県仙台市宮城野区榴岡"),
        ("GARCÍA MÁRQUEZ GABRIEL JOSÉ", "宮城県仙台市泉区"),
    ]
    for i, (name, address) in enumerate(cases):
        img = resident_image(name=name, address=address)
        path = cards.write(img, f"card{i}.json")
        cards.insert(path, RESIDENT)
        with pcsc.PcscTransport(RESIDENT) as t:
            got = read_my_number_card(t, PIN_KENHOJO)
        assert (got.name, got.address) == (name, address)
        cards.remove(RESIDENT)


@pytest.mark.parametrize("kind", ["bad-offsets", "truncated"])
def test_malformed_ef_is_reported_not_crashed(cards: Cards, kind: str) -> None:
    good = encode_attributes(Attributes("仙台　花子", "宮城県", "19900401", "2"))
    raw = good[:6] + bytes(8) + good[14:] if kind == "bad-offsets" else good[:-5]
    img = resident_image(raw_files={(c.AID_KENHOJO, c.EF_ATTRIBUTES): raw})
    cards.insert(cards.write(img), RESIDENT)
    with pcsc.PcscTransport(RESIDENT) as t:
        with pytest.raises(e.MalformedCardData):
            read_my_number_card(t, PIN_KENHOJO)
        assert read_resident_code(t, PIN_JUKI) == img.resident_code  # card still answers


def test_operator_card_signs_a_challenge_in_slot_1(cards: Cards) -> None:
    registered = operator_image("op-0007")
    cards.insert(cards.write(registered, "op.json"), OPERATOR)
    challenge = os.urandom(32)
    with pcsc.PcscTransport(OPERATOR) as t:
        assert t.atr == c.ATR_OPERATOR
        assert operator_card_id(t) == "op-0007"
        sig = sign_challenge(t, challenge)
    assert verify_challenge(registered.public_key, challenge, sig)


def test_operator_card_with_a_wrong_key_fails_verification(cards: Cards) -> None:
    registered = operator_image("op-0007")
    forged = operator_image("op-0007")
    cards.insert(cards.write(forged, "forged.json"), OPERATOR)
    challenge = os.urandom(32)
    with pcsc.PcscTransport(OPERATOR) as t:
        assert operator_card_id(t) == "op-0007"
        sig = sign_challenge(t, challenge)
    assert not verify_challenge(registered.public_key, challenge, sig)


def test_both_slots_at_once_and_the_wrong_card_in_each(cards: Cards) -> None:
    cards.insert(cards.write(resident_image(), "r.json"), RESIDENT)
    cards.insert(cards.write(operator_image(), "o.json"), OPERATOR)
    with pcsc.PcscTransport(OPERATOR) as op, pcsc.PcscTransport(RESIDENT) as res:
        with pytest.raises(e.NotMyNumberCard):
            read_my_number_card(op, PIN_KENHOJO)
        with pytest.raises(e.NotOperatorCard):
            operator_card_id(res)
        assert read_resident_code(res, PIN_JUKI) == "12345678903"


def test_slot_bookkeeping(cards: Cards, tmp_path: Path) -> None:
    path = cards.write(resident_image())
    pid = cards.insert(path, RESIDENT)
    assert slots.inserted_cards(cards.run_dir) == {RESIDENT: pid}
    with pytest.raises(e.SlotOccupied):
        slots.insert_card(path, RESIDENT, cards.run_dir)
    cards.remove(RESIDENT)
    assert slots.inserted_cards(cards.run_dir) == {}
    assert not slots.remove_card(RESIDENT, cards.run_dir)
