"""封書 (the sealed envelope): signed clear header, body encrypted to the recipient.

Wire format version 1 (docs/architecture.md):

    wire         = msgpack [1, header_bytes, signature, ciphertext]
    header_bytes = msgpack {v, id, kind, type, from, to, iat, dl, cid, rh}
    signature    = Ed25519(sender, b"juki-env-v1" + header_bytes + ciphertext)
    ciphertext   = crypto_box(sender → recipient, msgpack(body))   (nonce ‖ MAC ‖ data)

The signature covers the recipient (no re-addressing) and the ciphertext (no body tampering).
This replaces the real network's mutual authentication: 「認証できない相手先への情報の提供は
なされない」.

`Opener.open` checks in the contract's order and raises `Refused(reason)` at the first failure:
malformed, unknown_version, unknown_sender, not_for_me, bad_signature, expired / from_future,
replay, route_not_allowed, undecryptable, schema. Every decoding failure of hostile bytes is
MALFORMED: the unpacker is strict (no ext types, no non-string map keys, lengths bounded by the
input) so no input can make it allocate more than the wire's own size.

The Opener asks the replay guard whether an id was seen but never remembers ids itself: only
the service knows when a message counts as accepted (after its journal transaction committed,
or after a reply was sent), and remembering earlier would turn a crash between open and commit
into a lost message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from broker import crypto
from broker.errors import KeyStoreError, Reason, Refused
from broker.ids import is_message_id, new_message_id
from broker.keys import Identity, PublicIdentity, TrustStore
from broker.routes import RouteTable
from broker.schema import Kind, SchemaRegistry

__all__ = [
    "MAX_WIRE_BYTES",
    "SIGN_CONTEXT",
    "VERSION",
    "Header",
    "Kind",
    "Message",
    "Opener",
    "ReplayGuard",
    "Sealer",
    "encode_header",
    "new_header",
    "peek_header",
    "reply_header",
    "wire_hash",
]

VERSION = 1
SIGN_CONTEXT = b"juki-env-v1"
MAX_WIRE_BYTES = 8 * 1024 * 1024
_MAX_NAME = 64
_MAX_TIME_MS = 2**63 - 1
_HEADER_KEYS = frozenset(("v", "id", "kind", "type", "from", "to", "iat", "dl", "cid", "rh"))
_KINDS = {k.value: k for k in Kind}
_HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class Header:
    """The clear, signed part of an envelope. Times are ms since the epoch."""

    version: int
    msg_id: str
    kind: Kind
    type: str
    sender: str
    recipient: str
    issued_at: int
    deadline: int
    correlation_id: str | None = None
    request_hash: bytes | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """An opened, verified, schema-checked message. `wire` is kept for the reply's hash."""

    header: Header
    body: dict[str, Any]
    wire: bytes


class ReplayGuard(Protocol):
    def seen(self, msg_id: str) -> bool: ...


def wire_hash(wire: bytes) -> bytes:
    """BLAKE2b-256 of the wire bytes: what a reply's `request_hash` holds."""
    return crypto.blake2b_256(wire)


def _name_ok(value: object) -> bool:
    return type(value) is str and 0 < len(value) <= _MAX_NAME


def _time_ok(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_TIME_MS


def _header_problem(h: Header) -> str | None:
    """Why `h` is not a well-formed version-1 header (shared by sealing and opening).

    One flat expression answers the common case (a well-formed header) without a call per
    field; only a header that fails it goes through the checks that name the problem.
    """
    t, s, r, cid, rh = h.type, h.sender, h.recipient, h.correlation_id, h.request_hash
    iat, dl, kind = h.issued_at, h.deadline, h.kind
    if (
        type(t) is str
        and type(s) is str
        and type(r) is str
        and 0 < len(t) <= _MAX_NAME
        and 0 < len(s) <= _MAX_NAME
        and 0 < len(r) <= _MAX_NAME
        and type(iat) is int
        and type(dl) is int
        and 0 <= iat <= dl <= _MAX_TIME_MS
        and (
            (
                kind is Kind.REPLY
                and type(cid) is str
                and 0 < len(cid) <= _MAX_NAME
                and type(rh) is bytes
                and len(rh) == _HASH_SIZE
            )
            or (
                (kind is Kind.REQUEST or kind is Kind.NOTICE)
                and rh is None
                and (cid is None or (type(cid) is str and 0 < len(cid) <= _MAX_NAME))
            )
        )
        and is_message_id(h.msg_id)
    ):
        return None
    return _header_problem_detail(h)


def _header_problem_detail(h: Header) -> str | None:
    if not is_message_id(h.msg_id):
        return "id is not a message id"
    if type(h.kind) is not Kind:
        return "unknown kind"
    if not _name_ok(h.type) or not _name_ok(h.sender) or not _name_ok(h.recipient):
        return "type, from and to must be non-empty strings"
    if not _time_ok(h.issued_at) or not _time_ok(h.deadline):
        return "iat and dl must be non-negative ms timestamps"
    if h.deadline < h.issued_at:
        return "deadline before issue time"
    cid, rh = h.correlation_id, h.request_hash
    if cid is not None and not _name_ok(cid):
        return "cid must be nil or a non-empty string"
    if rh is not None and (type(rh) is not bytes or len(rh) != _HASH_SIZE):
        return "rh must be nil or a 32-byte hash"
    if h.kind is Kind.REPLY:
        if cid is None or rh is None:
            return "a reply needs cid and rh"
    elif rh is not None:
        return "only replies carry rh"
    return None


def encode_header(h: Header) -> bytes:
    """The header's canonical msgpack bytes (map keys in the contract's order)."""
    packed: bytes = msgpack.packb(
        {
            "v": h.version,
            "id": h.msg_id,
            "kind": h.kind.value,
            "type": h.type,
            "from": h.sender,
            "to": h.recipient,
            "iat": h.issued_at,
            "dl": h.deadline,
            "cid": h.correlation_id,
            "rh": h.request_hash,
        }
    )
    return packed


def _unpack(data: bytes) -> Any:
    # unpackb bounds every length by len(data); ext types have no place in our format.
    return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True, max_ext_len=0)


def _malformed(detail: str) -> Refused:
    return Refused(Reason.MALFORMED, detail)


def _bin_prefix(size: int) -> bytes:
    """msgpack's (minimal) bin 8/16/32 prefix for `size` bytes, as `packb` writes it."""
    if size < 0x100:
        return bytes((0xC4, size))
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


_OUTER_HEAD = bytes((0x94, VERSION))  # fixarray of 4, positive fixint 1
_SIG_PREFIX = _bin_prefix(crypto.SIGNATURE_SIZE)


def _bin_at(wire: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the bin object at `pos`; (-1, -1) when it is not a bin."""
    tag = wire[pos]
    if tag == 0xC4:
        start = pos + 2
        return start, start + wire[pos + 1]
    if tag == 0xC5:
        start = pos + 3
        return start, start + int.from_bytes(wire[pos + 1 : start], "big")
    if tag == 0xC6:
        start = pos + 5
        return start, start + int.from_bytes(wire[pos + 1 : start], "big")
    return -1, -1


def _split(wire: bytes) -> list[Any] | None:
    """The envelope array of a wire in the layout `Sealer` writes, without a msgpack pass.

    Any other encoding (non-minimal lengths, wrong types, trailing bytes, truncation) gives
    None and goes through the general decoder, which also names what is wrong with it.
    """
    if wire[:2] != _OUTER_HEAD or len(wire) < 72:
        return None
    start, end = _bin_at(wire, 2)
    if start < 0 or wire[end : end + 2] != _SIG_PREFIX:
        return None
    sig_end = end + 2 + crypto.SIGNATURE_SIZE
    if sig_end + 1 >= len(wire):
        return None
    ct_start, ct_end = _bin_at(wire, sig_end)
    if ct_start < 0 or ct_end != len(wire):
        return None
    return [VERSION, wire[start:end], wire[end + 2 : sig_end], wire[ct_start:]]


def _decode(wire: object) -> tuple[Header, bytes, bytes, bytes]:
    """Parse the outer array and the header; MALFORMED or UNKNOWN_VERSION on failure."""
    if type(wire) is not bytes:
        raise _malformed(f"wire must be bytes, got {type(wire).__name__}")
    if len(wire) > MAX_WIRE_BYTES:
        raise _malformed(f"wire longer than {MAX_WIRE_BYTES} bytes")
    outer = _split(wire)
    if outer is not None:
        # The common case, kept flat: a live node runs this between sleeps with cold caches,
        # where every extra call and allocation costs several times its warmed-up price.
        header_bytes = outer[1]
        try:
            h = _unpack(header_bytes)
        except Exception:
            h = None
        if type(h) is dict and h.keys() == _HEADER_KEYS and h["v"] == VERSION:
            kind = h["kind"]
            header = Header(
                VERSION,
                h["id"],
                _KINDS.get(kind) if type(kind) is str else None,  # type: ignore[arg-type]
                h["type"],
                h["from"],
                h["to"],
                h["iat"],
                h["dl"],
                h["cid"],
                h["rh"],
            )
            if type(h["v"]) is int and _header_problem(header) is None:
                return header, header_bytes, outer[2], outer[3]
    return _decode_slow(wire, outer)


def _decode_slow(wire: bytes, outer: list[Any] | None) -> tuple[Header, bytes, bytes, bytes]:
    """The general decoder: any msgpack encoding of the envelope, and the reason for refusal."""
    if outer is None:
        try:
            outer = _unpack(wire)
        except Exception as exc:  # msgpack raises ValueError, TypeError, StackError, ...
            raise _malformed(f"not msgpack: {type(exc).__name__}") from None
    if type(outer) is not list or not outer or type(outer[0]) is not int:
        raise _malformed("not an envelope array")
    if outer[0] != VERSION:
        raise Refused(Reason.UNKNOWN_VERSION, f"wire version {outer[0]}")
    if len(outer) != 4:
        raise _malformed("envelope array must have 4 elements")
    _, header_bytes, signature, ciphertext = outer
    if type(header_bytes) is not bytes or type(ciphertext) is not bytes:
        raise _malformed("header and ciphertext must be bytes")
    if type(signature) is not bytes or len(signature) != crypto.SIGNATURE_SIZE:
        raise _malformed("signature must be 64 bytes")
    try:
        h = _unpack(header_bytes)
    except Exception as exc:
        raise _malformed(f"header not msgpack: {type(exc).__name__}") from None
    if type(h) is not dict or len(h) != len(_HEADER_KEYS) or not _HEADER_KEYS.issuperset(h):
        raise _malformed("header must have exactly the fields v id kind type from to iat dl cid rh")
    v = h["v"]
    if type(v) is not int:
        raise _malformed("header v must be an int")
    if v != VERSION:
        raise Refused(Reason.UNKNOWN_VERSION, f"header version {v}")
    kind = h["kind"]
    header = Header(
        v,
        h["id"],
        _KINDS.get(kind) if type(kind) is str else None,  # type: ignore[arg-type]
        h["type"],
        h["from"],
        h["to"],
        h["iat"],
        h["dl"],
        h["cid"],
        h["rh"],
    )
    problem = _header_problem(header)
    if problem is not None:
        raise _malformed(f"header: {problem}")
    return header, header_bytes, signature, ciphertext


def peek_header(wire: bytes) -> Header | None:
    """The header of `wire` if it parses, else None; unverified, for logging a refusal only."""
    try:
        return _decode(wire)[0]
    except Refused:
        return None


def new_header(
    kind: Kind,
    type: str,
    sender: str,
    recipient: str,
    *,
    ttl_seconds: float,
    correlation_id: str | None = None,
    request_hash: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> Header:
    """A fresh header issued now with a new message id, valid for `ttl_seconds`."""
    now_ms = int(clock() * 1000)
    return Header(
        VERSION,
        new_message_id(),
        kind,
        type,
        sender,
        recipient,
        now_ms,
        now_ms + int(ttl_seconds * 1000),
        correlation_id,
        request_hash,
    )


def reply_header(
    request: Message, *, ttl_seconds: float, clock: Callable[[], float] = time.time
) -> Header:
    """The header answering `request`: back to its sender, same type, bound to its wire hash."""
    rq = request.header
    return new_header(
        Kind.REPLY,
        rq.type,
        rq.recipient,
        rq.sender,
        ttl_seconds=ttl_seconds,
        correlation_id=rq.msg_id,
        request_hash=wire_hash(request.wire),
        clock=clock,
    )


class _Peers:
    """Per peer: its trust entry and the crypto_box with our shared key precomputed.

    Looked up by node id on every message; the trust store is asked each time (a rotated or
    removed peer takes effect at once) and the cached box is reused while the entry is the same
    object.
    """

    __slots__ = ("_cache", "_own", "_trust")

    def __init__(self, own: crypto.BoxSecret, trust: TrustStore) -> None:
        self._own = own
        self._trust = trust
        self._cache: dict[str, tuple[PublicIdentity, crypto.Box]] = {}

    def get(self, node_id: str) -> tuple[PublicIdentity, crypto.Box] | None:
        peer = self._trust.get(node_id)
        if peer is None:
            return None
        cached = self._cache.get(node_id)
        if cached is not None and cached[0] is peer:
            return cached
        if len(self._cache) >= _MAX_CACHED_PEERS:
            self._cache.clear()
        entry = self._cache[node_id] = (peer, crypto.Box(self._own, peer.box_key))
        return entry


_MAX_CACHED_PEERS = 4096


class Sealer:
    """Seals bodies from `identity` to peers in `trust`. Thread-safe."""

    def __init__(self, identity: Identity, trust: TrustStore) -> None:
        self._identity = identity
        self._node_id = identity.node_id
        self._sign = identity.signer.sign
        self._trust = trust
        self._peers = _Peers(identity.box_secret, trust)

    def seal(self, header: Header, body: dict[str, Any]) -> bytes:
        """The wire bytes of `body` under `header`.

        Raises:
            ValueError: the header is not ours or not well formed (a programming error).
            KeyStoreError: the recipient is not in the trust file.
        """
        return self.seal_plaintext(header, msgpack.packb(body))

    def seal_plaintext(self, header: Header, plaintext: bytes) -> bytes:
        """`seal` of a body already encoded as msgpack (the outbox keeps bodies that way)."""
        if header.sender != self._node_id:
            raise ValueError(f"header sender {header.sender!r} is not {self._node_id!r}")
        if header.version != VERSION:
            raise ValueError(f"cannot seal wire version {header.version}")
        problem = _header_problem(header)
        if problem is not None:
            raise ValueError(f"header: {problem}")
        peer = self._peers.get(header.recipient)
        if peer is None:
            raise KeyStoreError(f"recipient {header.recipient!r} is not in the trust file")
        ciphertext = peer[1].encrypt(plaintext)
        header_bytes = encode_header(header)
        signature = self._sign(SIGN_CONTEXT + header_bytes + ciphertext)
        # msgpack [1, header_bytes, signature, ciphertext], written directly (golden-tested).
        return b"".join(
            (
                _OUTER_HEAD,
                _bin_prefix(len(header_bytes)),
                header_bytes,
                _SIG_PREFIX,
                signature,
                _bin_prefix(len(ciphertext)),
                ciphertext,
            )
        )


class Opener:
    """Verifies and opens envelopes addressed to `identity`. Thread-safe if the guard is.

    Args:
        skew_seconds: tolerated clock difference between nodes, applied both to the deadline
            (expired) and to the issue time (from the future).
        clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        routes: RouteTable,
        schemas: SchemaRegistry,
        replay: ReplayGuard,
        *,
        skew_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node_id = identity.node_id
        self._trust = trust
        self._routes = routes
        self._schemas = schemas
        self._replay = replay
        self._skew_ms = int(skew_seconds * 1000)
        self._clock = clock
        self._peers = _Peers(identity.box_secret, trust)
        self._allows = routes.allows
        self._validate = schemas.validate_body
        self._seen = replay.seen

    def open(self, wire: bytes) -> Message:
        """The verified message, or Refused with the first failing check's reason."""
        header, header_bytes, signature, ciphertext = _decode(wire)
        sender = header.sender
        peer = self._peers.get(sender)
        if peer is None:
            raise Refused(Reason.UNKNOWN_SENDER, f"sender {sender!r} not in trust file")
        if header.recipient != self._node_id:
            raise Refused(Reason.NOT_FOR_ME, f"addressed to {header.recipient!r}")
        if not crypto.verify(
            peer[0].verify_key, SIGN_CONTEXT + header_bytes + ciphertext, signature
        ):
            raise Refused(Reason.BAD_SIGNATURE, f"signature does not verify for {sender!r}")
        now_ms = int(self._clock() * 1000)
        if now_ms > header.deadline + self._skew_ms:
            raise Refused(Reason.EXPIRED, f"deadline passed {now_ms - header.deadline} ms ago")
        if header.issued_at > now_ms + self._skew_ms:
            raise Refused(Reason.FROM_FUTURE, f"issued {header.issued_at - now_ms} ms ahead")
        if self._seen(header.msg_id):
            raise Refused(Reason.REPLAY, f"message {header.msg_id} already seen")
        if not self._allows(sender, header.recipient, header.type, header.kind):
            raise Refused(
                Reason.ROUTE_NOT_ALLOWED,
                f"{header.kind} {header.type!r} from {sender!r} to {header.recipient!r}",
            )
        plaintext = peer[1].decrypt(ciphertext)
        if plaintext is None:
            raise Refused(Reason.UNDECRYPTABLE, f"body not boxed for us by {sender!r}")
        try:
            body = _unpack(plaintext)
        except Exception as exc:
            raise _malformed(f"body not msgpack: {type(exc).__name__}") from None
        self._validate(header, body)
        return Message(header, body, wire)
