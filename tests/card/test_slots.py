"""Slot bookkeeping that needs no pcscd: bad images fail in the caller, stale pid files go."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.card import slots
from tui.card.errors import InvalidCardImage


def test_bad_image_fails_before_any_process_starts(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InvalidCardImage):
        slots.insert_card(tmp_path / "bad.json", 0, tmp_path / "run")
    assert not (tmp_path / "run" / "card-slot-0.pid").exists()


def test_slot_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        slots.insert_card(tmp_path / "x.json", 5, tmp_path)


def test_stale_pid_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    # pid 1 is alive but is not a virtual card, so the file must be treated as stale
    (tmp_path / "card-slot-0.pid").write_text("1\n")
    (tmp_path / "card-slot-1.pid").write_text("not a pid\n")
    assert slots.inserted_cards(tmp_path) == {}
    assert not (tmp_path / "card-slot-0.pid").exists()
    assert not slots.remove_card(1, tmp_path)
