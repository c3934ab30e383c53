"""Card life cycle (CS-8): every (state, event) pair, allowed and refused, against an expectation
written here independently of store/cards.py's table; and the 有効期限 rule."""

from __future__ import annotations

from datetime import date

import pytest

from store.cards import (
    TRANSITIONS,
    CardEvent,
    CardState,
    CardTransitionError,
    allowed_events,
    card_expiry,
    transition,
)

# What a card may go through, written out by hand from the life cycle: a card waiting at the
# municipality can only be handed over or abolished; a card in the holder's hands can be
# suspended (lost) / released (found), abolished, handed back (返還) or collected (回収); an
# abolished card can only be physically disposed of; returned and collected are final.
EXPECTED: dict[str, dict[str, str]] = {
    "applied": {"交付": "issued", "廃止": "abolished"},
    "issued": {
        "一時停止": "suspended",
        "廃止": "abolished",
        "返還": "returned",
        "回収": "collected",
    },
    "suspended": {
        "一時停止解除": "released",
        "廃止": "abolished",
        "返還": "returned",
        "回収": "collected",
    },
    "released": {
        "一時停止": "suspended",
        "廃止": "abolished",
        "返還": "returned",
        "回収": "collected",
    },
    "abolished": {"返還": "returned", "回収": "collected"},
    "collected": {},
    "returned": {},
}
STATES = ["applied", "issued", "suspended", "released", "abolished", "collected", "returned"]
EVENTS = ["交付", "一時停止", "一時停止解除", "廃止", "回収", "返還"]
MATRIX = [(s, e) for s in STATES for e in EVENTS]


def test_the_vocabulary_is_the_seeds() -> None:
    assert sorted(s.value for s in CardState) == sorted(STATES)
    assert sorted(e.value for e in CardEvent) == sorted(EVENTS)


def test_the_table_holds_exactly_the_expected_moves() -> None:
    table = {(s.value, e.value): t.value for (s, e), t in TRANSITIONS.items()}
    expected = {(s, e): t for s, moves in EXPECTED.items() for e, t in moves.items()}
    assert table == expected


@pytest.mark.parametrize(("state", "event"), MATRIX, ids=[f"{s}-{e}" for s, e in MATRIX])
def test_every_state_and_event(state: str, event: str) -> None:
    expected = EXPECTED[state].get(event)
    if expected is not None:
        assert transition(state, event) is CardState(expected)
        assert transition(CardState(state), CardEvent(event)).value == expected
        return
    with pytest.raises(CardTransitionError) as caught:
        transition(state, event)
    err = caught.value
    assert err.state is CardState(state) and err.event is CardEvent(event)
    text = str(err)
    assert state in text and event in text  # names the current state and the event
    assert err.rule == "CS-8"
    for allowed in EXPECTED[state]:
        assert allowed in text  # and what would have been possible
    assert event in err.title


@pytest.mark.parametrize("state", STATES)
def test_allowed_events_lists_the_expected_ones(state: str) -> None:
    assert sorted(e.value for e in allowed_events(state)) == sorted(EXPECTED[state])


def test_unknown_names_are_not_events() -> None:
    with pytest.raises(ValueError):
        transition("issued", "紛失")
    with pytest.raises(ValueError):
        transition("lost", "廃止")


@pytest.mark.parametrize(
    ("born", "issued", "expires"),
    [
        # adult: the 10th birthday after the issue day
        (date(1990, 4, 1), date(2025, 3, 31), date(2034, 4, 1)),  # birthday tomorrow = 1st
        (date(1990, 4, 1), date(2025, 4, 1), date(2035, 4, 1)),  # issued on the birthday
        (date(1990, 4, 1), date(2025, 4, 2), date(2035, 4, 1)),
        # under 18 on the issue day: the 5th birthday
        (date(2025, 4, 1), date(2025, 6, 1), date(2030, 4, 1)),
        (date(2007, 6, 2), date(2025, 6, 1), date(2029, 6, 2)),  # 17 today, 18 tomorrow
        (date(2007, 6, 1), date(2025, 6, 1), date(2035, 6, 1)),  # 18 on the issue day
        # 29 February falls on 28 February in a common year
        (date(2000, 2, 29), date(2025, 1, 10), date(2034, 2, 28)),
        (date(2000, 2, 29), date(2026, 3, 1), date(2036, 2, 29)),
    ],
)
def test_card_expiry(born: date, issued: date, expires: date) -> None:
    assert card_expiry(born, issued) == expires
