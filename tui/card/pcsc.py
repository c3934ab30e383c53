"""PC/SC (the smart-card service): the only module that imports pyscard.

Uses pyscard's thin ``smartcard.scard`` layer, which returns PC/SC result codes instead of
raising, so every failure is translated in one place (``_raise_for``) into our error tree:

=============================================  ==========================================
PC/SC result                                   our error
=============================================  ==========================================
SCARD_E_NO_SERVICE, _SERVICE_STOPPED,          ReaderUnavailable (pcscd not running)
_NO_READERS_AVAILABLE, _UNKNOWN_READER,
_READER_UNAVAILABLE, EstablishContextException
SCARD_E_NO_SMARTCARD, SCARD_E_TIMEOUT (wait)   NoCard
SCARD_W_REMOVED_CARD, _RESET_CARD,             CardRemoved (the card left while we used it)
_UNPOWERED_CARD, _UNRESPONSIVE_CARD,
_NOT_TRANSACTED / comm errors with no card
anything else                                  ReaderUnavailable with the code in ``detail``
=============================================  ==========================================

``PcscTransport.transmit`` also resolves 61xx (GET RESPONSE) and 6Cxx (resend with the Le the
card asked for), so the layers above only ever see final status words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from smartcard import scard
from smartcard.Exceptions import SmartcardException

from . import constants as c
from .errors import CardError, CardRemoved, NoCard, ReaderUnavailable

_UNAVAILABLE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_E_NO_READERS_AVAILABLE,
    scard.SCARD_E_UNKNOWN_READER,
    scard.SCARD_E_READER_UNAVAILABLE,
}
_REMOVED = {
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_W_RESET_CARD,
    scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_W_UNRESPONSIVE_CARD,
}
_COMMS = {
    scard.SCARD_E_NOT_TRANSACTED,
    scard.SCARD_F_COMM_ERROR,
    scard.SCARD_E_COMM_DATA_LOST,
    scard.SCARD_E_INVALID_HANDLE,
    scard.SCARD_E_NO_SMARTCARD,
}
_MAX_CHAINED_RESPONSES = 64  # a card answering 61xx forever must not hang the terminal


def _code(rc: int) -> str:
    return f"PC/SC 0x{rc & 0xFFFFFFFF:08X}"


def _raise_for(rc: int, *, removed_if_comms: bool = False) -> None:
    if rc == scard.SCARD_S_SUCCESS:
        return
    if rc in _UNAVAILABLE:
        raise ReaderUnavailable(detail=_code(rc))
    if rc in _REMOVED or (removed_if_comms and rc in _COMMS):
        raise CardRemoved(detail=_code(rc))
    if rc == scard.SCARD_E_NO_SMARTCARD:
        raise NoCard(detail=_code(rc))
    raise ReaderUnavailable(detail=_code(rc))


class _Context:
    """An SCARDCONTEXT, released on close."""

    def __init__(self) -> None:
        try:
            rc, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        except SmartcardException as exc:
            raise ReaderUnavailable(detail=str(exc)) from exc
        _raise_for(rc)

    def close(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None


def _list(ctx: _Context) -> list[str]:
    rc, names = scard.SCardListReaders(ctx.handle, [])
    if rc == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    _raise_for(rc)
    return list(names)


def list_readers() -> list[str]:
    """Reader names pcscd knows; ReaderUnavailable when pcscd is not running."""
    ctx = _Context()
    try:
        return _list(ctx)
    finally:
        ctx.close()


def resolve_reader(reader: str | int) -> str:
    """A reader name, or the vpcd reader of slot ``reader`` when given an int."""
    return c.vpcd_reader_name(reader) if isinstance(reader, int) else reader


def _wait(reader: str, timeout: float, want_present: bool) -> None:
    ctx = _Context()
    try:
        if reader not in _list(ctx):
            raise ReaderUnavailable(detail=f"no reader {reader!r}")
        deadline = time.monotonic() + timeout
        state = scard.SCARD_STATE_UNAWARE
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            rc, states = scard.SCardGetStatusChange(ctx.handle, remaining_ms, [(reader, state)])
            if rc == scard.SCARD_E_TIMEOUT:
                if want_present:
                    raise NoCard(detail=f"no card within {timeout:.1f} s")
                raise CardError("カードが取り外されませんでした。", detail="removal timeout")
            _raise_for(rc)
            _, event, _atr = states[0]
            present = bool(event & scard.SCARD_STATE_PRESENT) and not (
                event & scard.SCARD_STATE_MUTE
            )
            if present == want_present:
                return
            state = event & ~scard.SCARD_STATE_CHANGED
            if time.monotonic() >= deadline:
                if want_present:
                    raise NoCard(detail=f"no card within {timeout:.1f} s")
                raise CardError("カードが取り外されませんでした。", detail="removal timeout")
    finally:
        ctx.close()


def wait_for_card(reader: str | int, timeout: float = 10.0) -> None:
    """Block until a card is present in ``reader`` (NoCard after ``timeout`` seconds)."""
    _wait(resolve_reader(reader), timeout, want_present=True)


def wait_for_removal(reader: str | int, timeout: float = 10.0) -> None:
    """Block until ``reader`` is empty (CardError after ``timeout`` seconds)."""
    _wait(resolve_reader(reader), timeout, want_present=False)


def complete_response(send: Callable[[bytes], tuple[bytes, int]], apdu: bytes) -> tuple[bytes, int]:
    """Send ``apdu`` and resolve 6Cxx (resend with Le = xx) and 61xx (GET RESPONSE) chains."""
    data, sw = send(apdu)
    if sw >> 8 == 0x6C and len(apdu) >= 4:
        le = sw & 0xFF
        if len(apdu) <= 5:  # case 1 gains an Le, case 2 has its Le replaced
            resend = apdu[:4] + bytes([le])
        elif len(apdu) == 5 + apdu[4]:  # case 3 gains an Le
            resend = apdu + bytes([le])
        else:  # case 4: Le is the last byte
            resend = apdu[:-1] + bytes([le])
        data, sw = send(resend)
    out = bytearray(data)
    for _ in range(_MAX_CHAINED_RESPONSES):
        if sw >> 8 != 0x61:
            return bytes(out), sw
        more, sw = send(bytes([apdu[0] if apdu else 0, c.INS_GET_RESPONSE, 0, 0, sw & 0xFF]))
        out += more
    raise CardError("カードの応答が終わりません。", detail="61xx chain too long")


class PcscTransport:
    """A connection to the card in one reader; a ``reader.Transport``.

    Use as a context manager. ``connect`` waits up to ``timeout`` seconds for a card, because a
    virtual card is "present" only after its process has connected to vpcd.
    """

    def __init__(self, reader: str | int, *, timeout: float = 5.0) -> None:
        self.reader = resolve_reader(reader)
        self._ctx = _Context()
        self._card: int | None = None
        self._protocol = scard.SCARD_PCI_T1
        self.atr = b""
        try:
            self._connect(timeout)
        except BaseException:
            self._ctx.close()
            raise

    def _connect(self, timeout: float) -> None:
        if self.reader not in _list(self._ctx):
            raise ReaderUnavailable(detail=f"no reader {self.reader!r}")
        deadline = time.monotonic() + timeout
        while True:
            rc, card, proto = scard.SCardConnect(
                self._ctx.handle,
                self.reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if rc == scard.SCARD_S_SUCCESS:
                break
            if rc not in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD) or (
                time.monotonic() >= deadline
            ):
                _raise_for(rc)
            wait_left = deadline - time.monotonic()
            try:
                wait_for_card(self.reader, max(0.05, wait_left))
            except NoCard:
                if time.monotonic() >= deadline:
                    raise
        self._card = card
        self._protocol = (
            scard.SCARD_PCI_T0 if proto == scard.SCARD_PROTOCOL_T0 else (scard.SCARD_PCI_T1)
        )
        rc, _name, _state, _proto, atr = scard.SCardStatus(card)
        if rc == scard.SCARD_S_SUCCESS:
            self.atr = bytes(atr)

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        if self._card is None:
            raise CardError("カードに接続していません。", detail="transport closed")
        rc, resp = scard.SCardTransmit(self._card, self._protocol, list(apdu))
        if rc != scard.SCARD_S_SUCCESS:
            _raise_for(rc, removed_if_comms=True)
        if len(resp) < 2:
            raise CardRemoved(detail="response shorter than a status word")
        return bytes(resp[:-2]), (resp[-2] << 8) | resp[-1]

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        return complete_response(self._send, apdu)

    def close(self) -> None:
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            self._card = None
        self._ctx.close()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
