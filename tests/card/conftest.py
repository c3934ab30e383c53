"""Fixtures for the card tests: sample images, and pcscd + virtual cards for @pytest.mark.pcsc.

pcscd: the session fixture uses a running pcscd if ``/run/pcscd/pcscd.comm`` answers; otherwise it
runs plain ``pcscd`` (which daemonises; never ``--auto-exit``, which quits after 60 s idle) and
waits until the vpcd readers appear. CI does the same: ``pcscd`` once, after installing
vsmartcard-vpcd. A pcscd started here is left running for other suites.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tui.card import constants as c
from tui.card import pcsc, slots
from tui.card.errors import CardError, ReaderUnavailable
from tui.card.image import CardImage, MyNumberImage, save_image
from tui.card.operator import new_operator_image

PCSC_LOCK = Path("/tmp/juki-pcsc.lock")
"""vpcd has two slots for the whole machine; every test that puts cards in them holds this."""

PIN_KENHOJO = "4321"
PIN_JUKI = "8765"


def resident_image(**changes: object) -> MyNumberImage:
    """A resident's card; every test gets its own copy (the engine mutates counters)."""
    base = MyNumberImage(
        serial="000000000000123",
        municipality_code="041009",
        municipality_name="仙台市",
        expires="20341231",
        individual_number="123456789018",
        name="仙台　花子",
        address="宮城県仙台市青葉区国分町三丁目７番１号",
        birth_date="19900401",
        sex="2",
        resident_code="12345678903",
        pins={c.PinKind.KENHOJO: PIN_KENHOJO, c.PinKind.JUKI: PIN_JUKI},
    )
    return replace(base, **{"tries_left": {}, **changes})  # type: ignore[arg-type]


def operator_image(operator_id: str = "op-0001", seed: bytes | None = None) -> CardImage:
    return new_operator_image(
        operator_id,
        serial="900000000000001",
        municipality_code="041009",
        municipality_name="仙台市",
        expires="20301231",
        seed=seed,
    )


@pytest.fixture(scope="session")
def pcscd() -> None:
    """A pcscd answering on /run/pcscd/pcscd.comm with both vpcd readers."""
    try:
        pcsc.list_readers()
    except ReaderUnavailable:
        exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
        subprocess.run([exe], check=True, timeout=10)
    deadline = time.monotonic() + 10
    wanted = {c.vpcd_reader_name(0), c.vpcd_reader_name(1)}
    while True:
        try:
            if wanted <= set(pcsc.list_readers()):
                return
        except ReaderUnavailable:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                "pcscd did not come up with the vpcd readers (is vsmartcard-vpcd installed?)"
            )
        time.sleep(0.1)


class Cards:
    """Insert/remove virtual cards in the real stack, cleaning up after the test."""

    def __init__(self, run_dir: Path, image_dir: Path) -> None:
        self.run_dir = run_dir
        self.image_dir = image_dir

    def write(self, image: CardImage, name: str = "card.json") -> Path:
        path = self.image_dir / name
        save_image(path, image)
        return path

    def insert(self, path: Path, slot: int) -> int:
        try:  # a previous test's card may still be leaving pcscd's view
            pcsc.wait_for_removal(slot, 5)
        except CardError as exc:
            pytest.fail(f"vpcd slot {slot} is held by a card this test did not insert: {exc}")
        pid = slots.insert_card(path, slot, self.run_dir)
        pcsc.wait_for_card(slot, 10)
        return pid

    def remove(self, slot: int) -> None:
        if slots.remove_card(slot, self.run_dir):
            pcsc.wait_for_removal(slot, 10)

    def close(self) -> None:
        for slot in list(slots.inserted_cards(self.run_dir)):
            self.remove(slot)


@contextmanager
def pcsc_slots() -> Iterator[None]:
    """Exclusive use of the vpcd slots (tests/card and the card end-to-end tests share them,
    possibly from parallel pytest processes)."""
    with open(PCSC_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture
def cards(pcscd: None, tmp_path: Path) -> Iterator[Cards]:
    (tmp_path / "run").mkdir()
    (tmp_path / "images").mkdir()
    deck = Cards(tmp_path / "run", tmp_path / "images")
    with pcsc_slots():
        try:
            yield deck
        finally:
            deck.close()


ImageFactory = Callable[..., MyNumberImage]


@pytest.fixture
def make_image() -> ImageFactory:
    return resident_image
