"""仮想カード (virtual card, "vicc"): a My Number or operator card served to pcscd over vpcd.

Two layers, so unit tests need no sockets:

* ``CardEngine(image).process(apdu) -> response`` — the card itself: applications, files, keys,
  retry counters, security status. Pure apart from the ``on_change`` callback, which the socket
  loop points at ``save_image`` so counters survive the process (a blocked card stays blocked).
* ``run_vicc(image_path, slot, stop_event)`` — the vpcd client: connects to pcscd's vpcd on
  127.0.0.1:35963+slot, answers control codes (00 off, 01 on, 02 reset — all drop the selected
  DF and the security status; 04 → ATR) and APDUs. Closing the socket is a card removal.

Run as ``python -m tui.card.virtual IMAGE --slot N``; SIGTERM/SIGINT remove the card.

Behaviour follows cards.md §1.3-§1.5: SELECT by full DF name or by 2-byte EF id (P2 0C, no FCI);
VERIFY with a retry query on empty data (63Cx), a wrong PIN answering 63C(x-1), the try that
uses up the counter 63C0, later tries 6984, a success resetting the counter; READ BINARY with
15-bit offsets, short or extended Le, 6B00 at or past the end, 6982 before VERIFY; READ RECORD
for the 共通カードAP; 6A82 missing file, 6D00 unknown INS, 6E00 unknown CLA, 6700 bad length.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from . import constants as c
from .errors import CardError
from .image import CardImage, MyNumberImage, OperatorImage, load_image, save_image
from .operator import CHALLENGE_MAX, CHALLENGE_MIN, card_sign, operator_files
from .tlv import encode_attributes, encode_my_number, encode_resident_code

log = logging.getLogger(__name__)

SW_MEMORY_FAILURE = 0x6581  # the counter could not be persisted: refuse rather than forget


@dataclass(slots=True)
class _File:
    """A transparent EF (``data``) or a record EF (``records``), optionally PIN-protected."""

    data: bytes = b""
    records: list[bytes] | None = None
    access: c.PinKind | None = None


@dataclass(slots=True)
class _App:
    aid: bytes
    files: dict[int, _File] = field(default_factory=dict)
    keys: dict[int, c.PinKind] = field(default_factory=dict)
    signing_seed: bytes | None = None  # INTERNAL AUTHENTICATE, operator AP only


@dataclass(frozen=True, slots=True)
class Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None = no Le; 256 / 65536 when encoded as zero


class _Status(Exception):
    def __init__(self, sw: int) -> None:
        self.sw = sw


def parse_command(apdu: bytes) -> Command:
    """ISO 7816-4 cases 1-4, short and extended; ``_Status(6700)`` when the lengths disagree."""
    if len(apdu) < 4:
        raise _Status(c.SW_WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    n = len(body)
    if n == 0:
        return Command(cla, ins, p1, p2, b"", None)
    if n == 1:
        return Command(cla, ins, p1, p2, b"", body[0] or 256)
    if body[0] != 0:  # short Lc
        lc = body[0]
        if n == 1 + lc:
            return Command(cla, ins, p1, p2, body[1:], None)
        if n == 2 + lc:
            return Command(cla, ins, p1, p2, body[1:-1], body[-1] or 256)
        raise _Status(c.SW_WRONG_LENGTH)
    if n == 3:  # extended case 2
        return Command(cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536)
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0 or n not in (3 + lc, 5 + lc):
        raise _Status(c.SW_WRONG_LENGTH)
    data = body[3 : 3 + lc]
    if n == 3 + lc:
        return Command(cla, ins, p1, p2, data, None)
    return Command(cla, ins, p1, p2, data, int.from_bytes(body[-2:], "big") or 65536)


def _build_apps(image: CardImage) -> dict[bytes, _App]:
    if isinstance(image, OperatorImage):
        files = {fid: _File(data) for fid, data in operator_files(image).items()}
        app = _App(c.AID_OPERATOR, files=files, signing_seed=image.private_key_seed)
        return {app.aid: app}
    kenhojo = _App(
        c.AID_KENHOJO,
        files={
            c.EF_MY_NUMBER: _File(
                encode_my_number(image.individual_number), None, c.PinKind.KENHOJO
            ),
            c.EF_ATTRIBUTES: _File(encode_attributes(image.attributes), None, c.PinKind.KENHOJO),
        },
        keys={c.KEY_KENHOJO_PIN: c.PinKind.KENHOJO},
    )
    juki = _App(
        c.AID_JUKI,
        files={
            c.EF_RESIDENT_CODE: _File(
                encode_resident_code(image.resident_code), None, c.PinKind.JUKI
            )
        },
        keys={c.KEY_JUKI_PIN: c.PinKind.JUKI},
    )
    record = b"\x01\x1c" + (image.serial + image.municipality_code[:5] + image.expires).encode()
    common = _App(c.AID_COMMON, files={c.EF_COMMON_INFO: _File(records=[record])})
    apps = {a.aid: a for a in (kenhojo, juki, common)}
    if c.PinKind.SIGNING in image.pins:
        apps[c.AID_JPKI] = _App(c.AID_JPKI, keys={c.KEY_SIGNING_PIN: c.PinKind.SIGNING})
    for (aid, fid), data in image.raw_files.items():
        if aid in apps:
            old = apps[aid].files.get(fid)
            apps[aid].files[fid] = _File(data, None, old.access if old else None)
    return apps


def _ok(data: bytes = b"") -> bytes:
    return data + struct.pack(">H", c.SW_OK)


def _sw(sw: int) -> bytes:
    return struct.pack(">H", sw)


class CardEngine:
    """The card's APDU processor. Not thread-safe; one reader talks to one card at a time."""

    def __init__(
        self, image: CardImage, on_change: Callable[[CardImage], None] | None = None
    ) -> None:
        self.image = image
        self._on_change = on_change
        self._apps = _build_apps(image)
        self.atr = c.ATR_OPERATOR if isinstance(image, OperatorImage) else c.ATR_MY_NUMBER
        self._app: _App | None = None
        self._current: int | None = None
        self._verified: set[c.PinKind] = set()

    def reset(self) -> None:
        """Power off, power on and reset all land here: the card forgets its session."""
        self._app = None
        self._current = None
        self._verified.clear()

    def process(self, apdu: bytes) -> bytes:
        try:
            cmd = parse_command(apdu)
            if cmd.cla != c.CLA_ISO:
                return _sw(c.SW_CLA_NOT_SUPPORTED)
            handler = self._handlers.get(cmd.ins)
            if handler is None:
                return _sw(c.SW_INS_NOT_SUPPORTED)
            return handler(self, cmd)
        except _Status as st:
            return _sw(st.sw)

    # --- instructions ---------------------------------------------------------------------------

    def _select(self, cmd: Command) -> bytes:
        if cmd.p2 not in (0x00, c.P2_NO_FCI):
            return _sw(c.SW_WRONG_P1P2)
        if cmd.p1 == c.P1_SELECT_DF_NAME:
            if not 1 <= len(cmd.data) <= 16:
                return _sw(c.SW_WRONG_LENGTH)
            app = self._apps.get(cmd.data)
            if app is None:
                return _sw(c.SW_FILE_NOT_FOUND)
            self._app = app
            self._current = None
            self._verified.clear()  # security status belongs to the selected DF
            return _ok()
        if cmd.p1 == c.P1_SELECT_EF:
            if len(cmd.data) != 2:
                return _sw(c.SW_WRONG_LENGTH)
            fid = int.from_bytes(cmd.data, "big")
            if self._app is None or (fid not in self._app.files and fid not in self._app.keys):
                return _sw(c.SW_FILE_NOT_FOUND)
            self._current = fid
            return _ok()
        return _sw(c.SW_WRONG_P1P2)

    def _verify(self, cmd: Command) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 != c.P2_VERIFY_SPECIFIC:
            return _sw(c.SW_WRONG_P1P2)
        if self._app is None or self._current not in self._app.keys:
            return _sw(c.SW_NO_CURRENT_EF)
        if not isinstance(self.image, MyNumberImage):  # operator AP has no keys today
            return _sw(c.SW_NO_CURRENT_EF)
        kind = self._app.keys[self._current]
        tries = self.image.tries_left[kind]
        if not cmd.data:
            return _sw(c.sw_tries_left(tries))
        if tries == 0:
            return _sw(c.SW_REFERENCE_BLOCKED)
        if cmd.data == self.image.pins[kind].encode("ascii"):
            self._verified.add(kind)
            if tries != c.PIN_MAX_TRIES[kind]:
                return self._set_tries(kind, c.PIN_MAX_TRIES[kind], c.SW_OK)
            return _ok()
        self._verified.discard(kind)
        return self._set_tries(kind, tries - 1, c.sw_tries_left(tries - 1))

    def _set_tries(self, kind: c.PinKind, tries: int, sw: int) -> bytes:
        assert isinstance(self.image, MyNumberImage)
        old = self.image.tries_left[kind]
        self.image.tries_left[kind] = tries
        if self._on_change is not None:
            try:
                self._on_change(self.image)
            except OSError:
                log.exception("could not persist the retry counter")
                self.image.tries_left[kind] = min(old, tries)
                self._verified.discard(kind)
                return _sw(SW_MEMORY_FAILURE)
        return _sw(sw)

    def _current_file(self) -> _File:
        if self._app is None or self._current is None:
            raise _Status(c.SW_NO_CURRENT_EF)
        f = self._app.files.get(self._current)
        if f is None:  # a key
            raise _Status(c.SW_INCOMPATIBLE_FILE)
        if f.access is not None and f.access not in self._verified:
            raise _Status(c.SW_SECURITY_NOT_SATISFIED)
        return f

    def _read_binary(self, cmd: Command) -> bytes:
        if cmd.p1 & 0x80:  # short EF identifier addressing: not supported by this card
            return _sw(c.SW_WRONG_P1P2)
        if cmd.data or cmd.le is None:
            return _sw(c.SW_WRONG_LENGTH)
        f = self._current_file()
        if f.records is not None:
            return _sw(c.SW_INCOMPATIBLE_FILE)
        offset = (cmd.p1 << 8) | cmd.p2
        if offset >= len(f.data):
            return _sw(c.SW_OFFSET_OUT_OF_FILE)
        return _ok(f.data[offset : offset + cmd.le])

    def _read_record(self, cmd: Command) -> bytes:
        if cmd.p2 != c.P2_RECORD_NUMBER or cmd.p1 == 0:
            return _sw(c.SW_WRONG_P1P2)
        if cmd.data or cmd.le is None:
            return _sw(c.SW_WRONG_LENGTH)
        f = self._current_file()
        if f.records is None:
            return _sw(c.SW_INCOMPATIBLE_FILE)
        if cmd.p1 > len(f.records):
            return _sw(c.SW_RECORD_NOT_FOUND)
        return _ok(f.records[cmd.p1 - 1][: cmd.le])

    def _internal_authenticate(self, cmd: Command) -> bytes:
        if self._app is None or self._app.signing_seed is None:
            return _sw(c.SW_INS_NOT_SUPPORTED)
        if cmd.p1 != 0 or cmd.p2 != 0:
            return _sw(c.SW_WRONG_P1P2)
        if not CHALLENGE_MIN <= len(cmd.data) <= CHALLENGE_MAX or cmd.le is None:
            return _sw(c.SW_WRONG_LENGTH)
        return _ok(card_sign(self._app.signing_seed, cmd.data)[: cmd.le])

    _handlers: ClassVar[dict[int, Callable[[CardEngine, Command], bytes]]] = {
        c.INS_SELECT: _select,
        c.INS_VERIFY: _verify,
        c.INS_READ_BINARY: _read_binary,
        c.INS_READ_RECORD: _read_record,
        c.INS_INTERNAL_AUTHENTICATE: _internal_authenticate,
    }


class EngineTransport:
    """A ``reader.Transport`` wired straight to an engine: unit tests without pcscd."""

    def __init__(self, engine: CardEngine) -> None:
        self.engine = engine
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        resp = self.engine.process(apdu)
        return resp[:-2], int.from_bytes(resp[-2:], "big")


# --- vpcd socket loop ----------------------------------------------------------------------------


def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def _quickack(sock: socket.socket) -> None:
    """Acknowledge at once. vpcd writes the 2-byte length and the payload separately; with
    Nagle on its side and delayed ACKs on ours every APDU would wait ~40 ms for our ACK.
    Linux drops quick-ack mode after a while, hence after every read."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def _serve(sock: socket.socket, engine: CardEngine, stop: threading.Event) -> None:
    """Answer vpcd until it hangs up (ConnectionError) or ``stop`` is set."""
    sock.settimeout(0.1)  # how long a removal (SIGTERM) may take to be noticed
    buf = bytearray()
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        _quickack(sock)
        buf += chunk
        while len(buf) >= 2:
            (n,) = struct.unpack(">H", buf[:2])
            if len(buf) < 2 + n:
                break
            msg = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            if n == 1:
                if msg[0] == 0x04:
                    _send_frame(sock, engine.atr)
                else:  # 00 power off, 01 power on, 02 reset
                    engine.reset()
            elif n:
                _send_frame(sock, engine.process(msg))


def run_vicc(
    image_path: str | Path,
    slot: int,
    stop_event: threading.Event,
    *,
    host: str = c.VPCD_HOST,
    port: int | None = None,
) -> None:
    """Serve the card in ``image_path`` on vpcd ``slot`` until ``stop_event`` is set.

    Reconnects when pcscd restarts, so an inserted card stays inserted across a pcscd restart.
    """
    image = load_image(image_path)
    engine = CardEngine(image, on_change=lambda img: save_image(image_path, img))
    target = (host, port if port is not None else c.vpcd_port(slot))
    while not stop_event.is_set():
        try:
            sock = socket.create_connection(target, timeout=1.0)
        except OSError:
            stop_event.wait(0.2)
            continue
        log.info("virtual %s card connected to vpcd slot %d", image.kind, slot)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _serve(sock, engine, stop_event)
        except OSError as exc:  # ConnectionError included: pcscd went away
            log.info("vpcd connection lost (%s); reconnecting", exc.__class__.__name__)
        finally:
            sock.close()
            engine.reset()
    log.info("virtual card removed from slot %d", slot)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a virtual card image to pcscd via vpcd.")
    parser.add_argument("image", type=Path)
    parser.add_argument("--slot", type=int, default=c.SLOT_RESIDENT)
    parser.add_argument("--port", type=int, default=None, help="override 35963+slot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_vicc(args.image, args.slot, stop, port=args.port)
    except CardError as exc:
        print(f"{exc.title}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
