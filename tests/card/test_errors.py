"""Status words → typed errors with Japanese text for the operator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.card import errors as e


@pytest.mark.parametrize(
    ("sw", "kind"),
    [
        (0x63C2, e.WrongPin),
        (0x63C1, e.WrongPin),
        (0x6300, e.WrongPin),
        (0x63C0, e.PinBlocked),  # the try that used up the counter
        (0x6984, e.PinBlocked),  # JICSAP: every later VERIFY
        (0x6983, e.PinBlocked),  # ISO wording, accepted too
        (0x6982, e.SecurityStatusNotSatisfied),
        (0x6A82, e.NotMyNumberCard),
        (0x6D00, e.UnexpectedStatus),
        (0x6700, e.UnexpectedStatus),
        (0x6B00, e.UnexpectedStatus),
    ],
)
def test_status_words_map_to_their_error(sw: int, kind: type[e.CardError]) -> None:
    err = e.error_for_status(sw)
    assert type(err) is kind
    with pytest.raises(kind):
        e.check_status(sw)


def test_ok_is_no_error() -> None:
    assert e.error_for_status(0x9000) is None
    e.check_status(0x9000)


def test_wrong_pin_reports_tries_left_in_the_message() -> None:
    err = e.error_for_status(0x63C2)
    assert isinstance(err, e.WrongPin)
    assert err.tries_left == 2
    assert "あと2回" in err.message
    no_counter = e.error_for_status(0x6300)
    assert isinstance(no_counter, e.WrongPin) and no_counter.tries_left is None


def test_unexpected_status_names_the_word() -> None:
    err = e.error_for_status(0x6F00)
    assert isinstance(err, e.UnexpectedStatus) and err.sw == 0x6F00
    assert "6F00" in err.message


@given(st.integers(0, 0xFFFF))
def test_every_status_word_maps_to_a_titled_error(sw: int) -> None:
    err = e.error_for_status(sw)
    if sw == 0x9000:
        assert err is None
        return
    assert isinstance(err, e.CardError)
    assert err.title and err.message and err.code


def test_every_error_class_has_japanese_text() -> None:
    classes = [
        e.NoCard,
        e.CardRemoved,
        e.NotMyNumberCard,
        e.NotOperatorCard,
        e.PinBlocked,
        e.MalformedCardData,
        e.ReaderUnavailable,
        e.SecurityStatusNotSatisfied,
        e.InvalidCardImage,
        e.SlotOccupied,
        e.InvalidPinFormat,
    ]
    codes = set()
    for cls in classes:
        err = cls()
        assert any("\u3040" <= ch <= "\u9fff" for ch in err.title + err.message), cls
        codes.add(err.code)
    assert len(codes) == len(classes)
