"""仮想カード APDU engine: status words and counters as cards.md §1.3-§1.5 describe them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.card import constants as c
from tui.card.image import MyNumberImage, load_image, save_image
from tui.card.virtual import CardEngine

from .conftest import PIN_JUKI, PIN_KENHOJO, operator_image, resident_image

SELECT_KENHOJO = bytes.fromhex("00A4040C0AD3921000310001010408")
SELECT_JUKI = bytes.fromhex("00A4040C0AD3921000310001010401")
SELECT_PIN_KEY = bytes.fromhex("00A4020C020011")
SELECT_EF1 = bytes.fromhex("00A4020C020001")
SELECT_EF2 = bytes.fromhex("00A4020C020002")
RETRY_QUERY = bytes.fromhex("00200080")


def verify(pin: str) -> bytes:
    return bytes.fromhex("00200080") + bytes([len(pin)]) + pin.encode()


def sw(resp: bytes) -> str:
    return resp[-2:].hex().upper()


@pytest.fixture
def engine() -> CardEngine:
    return CardEngine(resident_image())


def run(engine: CardEngine, *apdus: bytes) -> list[str]:
    return [sw(engine.process(a)) for a in apdus]


def test_the_documented_read_sequence(engine: CardEngine) -> None:
    assert (
        run(engine, SELECT_KENHOJO, SELECT_PIN_KEY, verify(PIN_KENHOJO), SELECT_EF1) == ["9000"] * 4
    )
    resp = engine.process(bytes.fromhex("00B0000011"))
    assert resp == bytes.fromhex("FF100C") + b"123456789018" + bytes.fromhex("FFFF9000")
    assert sw(engine.process(SELECT_EF2)) == "9000"
    head = engine.process(bytes.fromhex("00B0000007"))
    assert head[:2] == b"\xff\x20" and sw(head) == "9000" and len(head) == 9


def test_read_before_verify_is_refused(engine: CardEngine) -> None:
    assert run(engine, SELECT_KENHOJO, SELECT_EF1, bytes.fromhex("00B0000011")) == [
        "9000",
        "9000",
        "6982",
    ]


def test_retry_counter_sequence_to_blocked(engine: CardEngine) -> None:
    assert run(engine, SELECT_KENHOJO, SELECT_PIN_KEY, RETRY_QUERY) == ["9000", "9000", "63C3"]
    assert run(engine, verify("0000"), verify("0000"), verify("0000")) == ["63C2", "63C1", "63C0"]
    # blocked: even the right PIN is refused with 6984, and the query answers 63C0
    assert run(engine, verify(PIN_KENHOJO), RETRY_QUERY) == ["6984", "63C0"]
    assert run(engine, SELECT_EF1, bytes.fromhex("00B0000011"))[1] == "6982"


def test_success_resets_the_counter(engine: CardEngine) -> None:
    run(engine, SELECT_KENHOJO, SELECT_PIN_KEY)
    assert run(engine, verify("0000"), verify("0000"), verify(PIN_KENHOJO), RETRY_QUERY) == [
        "63C2",
        "63C1",
        "9000",
        "63C3",
    ]


def test_pin_of_the_wrong_length_costs_a_try(engine: CardEngine) -> None:
    run(engine, SELECT_KENHOJO, SELECT_PIN_KEY)
    assert run(engine, verify(PIN_KENHOJO + "0")) == ["63C2"]


def test_counters_are_per_key(engine: CardEngine) -> None:
    run(engine, SELECT_KENHOJO, SELECT_PIN_KEY, verify("0000"))
    assert run(engine, SELECT_JUKI, bytes.fromhex("00A4020C02001C"), RETRY_QUERY)[2] == "63C3"


@pytest.mark.parametrize("lose", ["reselect", "other_app", "reset"])
def test_security_status_is_lost(engine: CardEngine, lose: str) -> None:
    run(engine, SELECT_KENHOJO, SELECT_PIN_KEY, verify(PIN_KENHOJO))
    if lose == "reselect":
        run(engine, SELECT_KENHOJO)
    elif lose == "other_app":
        run(engine, SELECT_JUKI, SELECT_KENHOJO)
    else:
        engine.reset()
        run(engine, SELECT_KENHOJO)
    assert run(engine, SELECT_EF1, bytes.fromhex("00B0000011")) == ["9000", "6982"]


def test_juki_pin_does_not_open_the_kenhojo_files(engine: CardEngine) -> None:
    run(engine, SELECT_JUKI, bytes.fromhex("00A4020C02001C"), verify(PIN_JUKI))
    assert run(engine, SELECT_KENHOJO, SELECT_EF1, bytes.fromhex("00B0000011"))[2] == "6982"


def test_read_binary_offsets_and_end_of_file(engine: CardEngine) -> None:
    run(engine, SELECT_KENHOJO, SELECT_PIN_KEY, verify(PIN_KENHOJO), SELECT_EF1)
    middle = engine.process(bytes.fromhex("00B0000305"))
    assert middle == b"12345" + bytes.fromhex("9000")
    tail = engine.process(bytes.fromhex("00B0000F00"))  # Le 00 = 256: the card returns what's left
    assert tail == bytes.fromhex("FFFF9000")
    assert sw(engine.process(bytes.fromhex("00B0001101"))) == "6B00"  # offset 17 = end
    assert sw(engine.process(bytes.fromhex("00B07F0001"))) == "6B00"
    extended = engine.process(bytes.fromhex("00B00000000011"))
    assert extended[:-2] == engine.process(bytes.fromhex("00B0000011"))[:-2]


def test_missing_things(engine: CardEngine) -> None:
    assert run(engine, SELECT_EF1) == ["6A82"]  # no DF selected yet
    assert run(engine, bytes.fromhex("00A4040C05D392100031")) == ["6A82"]  # prefixes not served
    assert run(engine, bytes.fromhex("00A4040C0AA0000000000000000000")) == ["6A82"]
    assert run(engine, SELECT_KENHOJO, bytes.fromhex("00A4020C020099")) == ["9000", "6A82"]


@pytest.mark.parametrize(
    ("apdu", "want"),
    [
        ("00CA000000", "6D00"),  # GET DATA: not supported
        ("80A4040C0AD3921000310001010408", "6E00"),
        ("00A4040C0AD39210", "6700"),  # Lc says 10, 3 bytes follow
        ("00A4", "6700"),
        ("00A4020C03000100", "6700"),  # EF id of 3 bytes
        ("00A4080C020001", "6A86"),
        ("00200180", "6A86"),
        ("00B0000011", "6986"),  # no current EF
        ("00880000100102030405060708090A0B0C0D0E0F1000", "6D00"),  # not an operator card
    ],
)
def test_protocol_errors(engine: CardEngine, apdu: str, want: str) -> None:
    assert sw(engine.process(bytes.fromhex(apdu))) == want


def test_verify_needs_a_key_selected(engine: CardEngine) -> None:
    assert run(engine, SELECT_KENHOJO, SELECT_EF1, verify(PIN_KENHOJO)) == ["9000", "9000", "6986"]
    assert run(engine, SELECT_PIN_KEY, bytes.fromhex("00B0000001")) == ["9000", "6981"]


def test_common_ap_record(engine: CardEngine) -> None:
    run(engine, bytes.fromhex("00A4040C0AD3921000310001010100"), SELECT_EF1)
    resp = engine.process(bytes.fromhex("00B2010400"))
    assert resp == b"\x01\x1c" + b"000000000000123" + b"04100" + b"20341231" + b"\x90\x00"
    assert sw(engine.process(bytes.fromhex("00B2020400"))) == "6A83"
    assert sw(engine.process(bytes.fromhex("00B0000001"))) == "6981"


def test_signing_pin_exists_only_when_the_image_has_one() -> None:
    select_jpki = bytes.fromhex("00A4040C0AD392F000260100000001")
    assert run(CardEngine(resident_image()), select_jpki) == ["6A82"]
    img = resident_image(
        pins={c.PinKind.KENHOJO: "1111", c.PinKind.JUKI: "2222", c.PinKind.SIGNING: "ABC123"}
    )
    eng = CardEngine(img)
    assert run(eng, select_jpki, bytes.fromhex("00A4020C02001B"), RETRY_QUERY) == [
        "9000",
        "9000",
        "63C5",
    ]
    assert run(eng, verify("ABC123")) == ["9000"]


def test_counter_changes_are_persisted_and_survive_a_new_engine(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    save_image(path, resident_image())
    saves: list[int] = []

    def persist(img: object) -> None:
        assert isinstance(img, MyNumberImage)
        saves.append(img.tries_left[c.PinKind.KENHOJO])
        save_image(path, img)

    eng = CardEngine(load_image(path), on_change=persist)
    run(eng, SELECT_KENHOJO, SELECT_PIN_KEY, verify("0000"), verify("0000"), verify("0000"))
    assert saves == [2, 1, 0]
    fresh = CardEngine(load_image(path))
    assert run(fresh, SELECT_KENHOJO, SELECT_PIN_KEY, verify(PIN_KENHOJO)) == [
        "9000",
        "9000",
        "6984",
    ]


def test_a_counter_that_cannot_be_saved_refuses_the_verify() -> None:
    def broken(_: object) -> None:
        raise OSError("disk full")

    eng = CardEngine(resident_image(), on_change=broken)
    run(eng, SELECT_KENHOJO, SELECT_PIN_KEY)
    assert run(eng, verify("0000")) == ["6581"]
    assert run(eng, RETRY_QUERY) == ["63C2"]  # the try is still spent in memory


def test_operator_engine_has_only_its_own_application() -> None:
    eng = CardEngine(operator_image())
    assert eng.atr != CardEngine(resident_image()).atr
    assert run(eng, SELECT_KENHOJO) == ["6A82"]
    assert run(eng, bytes.fromhex("00A4040C09") + c.AID_OPERATOR, SELECT_EF1) == ["9000", "9000"]
    assert sw(eng.process(bytes.fromhex("00B0000000"))) == "9000"


def test_atr_is_well_formed() -> None:
    for atr in (c.ATR_MY_NUMBER, c.ATR_OPERATOR):
        assert atr[0] == 0x3B
        check = 0
        for b in atr[1:]:
            check ^= b
        assert check == 0  # TCK makes the XOR of T0..TCK zero


@settings(max_examples=400)
@given(st.binary(min_size=0, max_size=300))
def test_any_apdu_gets_a_status_word(apdu: bytes) -> None:
    eng = CardEngine(resident_image())
    eng.process(SELECT_KENHOJO)
    resp = eng.process(apdu)
    assert len(resp) >= 2
