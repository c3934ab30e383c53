"""PC/SC seam pieces that need no pcscd: 61xx / 6Cxx resolution and reader naming."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.card import constants as c
from tui.card.errors import CardError
from tui.card.pcsc import complete_response, resolve_reader

ROOT = Path(__file__).resolve().parents[2]


class Scripted:
    def __init__(self, replies: list[tuple[bytes, int]]) -> None:
        self.replies = replies
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return self.replies.pop(0)


def test_61xx_chains_get_response() -> None:
    send = Scripted([(b"ab", 0x6103), (b"cde", 0x6102), (b"fg", 0x9000)])
    assert complete_response(send, bytes.fromhex("00B0000000")) == (b"abcdefg", 0x9000)
    assert send.sent[1:] == [bytes.fromhex("00C0000003"), bytes.fromhex("00C0000002")]


def test_6cxx_resends_with_the_le_the_card_wants() -> None:
    send = Scripted([(b"", 0x6C11), (b"x" * 17, 0x9000)])
    assert complete_response(send, bytes.fromhex("00B0000020")) == (b"x" * 17, 0x9000)
    assert send.sent[1] == bytes.fromhex("00B0000011")
    case4 = Scripted([(b"", 0x6C40), (b"s" * 64, 0x9000)])
    complete_response(case4, bytes.fromhex("008800000401020304") + b"\x00")
    assert case4.sent[1] == bytes.fromhex("00880000040102030440")


def test_endless_61xx_is_an_error() -> None:
    with pytest.raises(CardError):
        complete_response(lambda _: (b"", 0x6101), bytes.fromhex("00B0000000"))


def test_plain_status_passes_through() -> None:
    assert complete_response(lambda _: (b"", 0x6982), bytes.fromhex("00B0000011")) == (
        b"",
        0x6982,
    )


def test_slots_name_the_vpcd_readers() -> None:
    assert resolve_reader(0) == "Virtual PCD 00 00"
    assert resolve_reader(1) == "Virtual PCD 00 01"
    assert resolve_reader("Some Reader 00 00") == "Some Reader 00 00"
    with pytest.raises(ValueError):
        c.vpcd_port(2)
    assert c.vpcd_port(1) == 35964


def test_pcscd_not_running_is_reader_unavailable(tmp_path: Path) -> None:
    # libpcsclite finds pcscd through PCSCLITE_CSOCK_NAME; pointing it at nothing is exactly
    # what a client sees when pcscd is not running, without stopping the shared pcscd.
    code = (
        "from tui.card import pcsc\n"
        "from tui.card.errors import ReaderUnavailable\n"
        "for f in (pcsc.list_readers, lambda: pcsc.PcscTransport(0),"
        " lambda: pcsc.wait_for_card(0, 0.1)):\n"
        "    try:\n"
        "        f()\n"
        "    except ReaderUnavailable as e:\n"
        "        print(e.title)\n"
    )
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert out.stdout.splitlines() == ["カードリーダが使用できません"] * 3, out.stderr
