"""The sealed envelope: golden bytes with fixed keys, and one crafted message per refusal reason.

Regenerate the golden file only on a deliberate wire-format change:
``.venv/bin/python -m tests.broker.test_envelope``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest

from broker import crypto
from broker.envelope import (
    SIGN_CONTEXT,
    Header,
    Kind,
    Message,
    Opener,
    Sealer,
    encode_header,
    peek_header,
    reply_header,
    wire_hash,
)
from broker.errors import KeyStoreError, Reason, Refused
from broker.keys import Identity, TrustStore
from broker.replay import CombinedReplayGuard, MemoryReplayGuard
from broker.schema import plumbing_types
from tests.broker import (
    CS,
    NOW,
    OTHER_CS,
    PREF,
    SKEW_SECONDS,
    World,
    cs_identity,
    make_world,
    pref_identity,
    route_table,
)

GOLDEN = Path(__file__).parent / "golden" / "envelope_v1.json"
GOLDEN_ID = "01K5P4Z8Q0J6X3V7ZB8D9M2N4R"
NOW_MS = int(NOW * 1000)


@pytest.fixture
def world() -> World:
    return make_world()


def _refused(opener: Opener, wire: bytes) -> Reason:
    with pytest.raises(Refused) as info:
        opener.open(wire)
    return info.value.reason


def _craft(
    signer: Identity,
    header: dict[str, Any] | bytes,
    ciphertext: bytes,
    *,
    version: object = 1,
) -> bytes:
    """An envelope built by hand, correctly signed by `signer` over whatever header it holds."""
    header_bytes = header if isinstance(header, bytes) else msgpack.packb(header)
    signature = signer.signer.sign(SIGN_CONTEXT + header_bytes + ciphertext)
    return msgpack.packb([version, header_bytes, signature, ciphertext])


def _header_map(h: Header) -> dict[str, Any]:
    return msgpack.unpackb(encode_header(h))


def _split(wire: bytes) -> tuple[bytes, bytes, bytes]:
    _, header_bytes, signature, ciphertext = msgpack.unpackb(wire)
    return header_bytes, signature, ciphertext


# -- golden bytes --------------------------------------------------------------------------------


def _golden_cases() -> list[tuple[str, Header, dict[str, Any]]]:
    request = Header(1, GOLDEN_ID, Kind.REQUEST, "echo", CS, PREF, NOW_MS, NOW_MS + 10_000)
    notice = Header(
        1,
        "01K5P4Z8Q0J6X3V7ZB8D9M2N4S",
        Kind.NOTICE,
        "demo.notice",
        CS,
        PREF,
        NOW_MS,
        NOW_MS + 86_400_000,
    )
    return [
        ("request", request, {"payload": b"\x00\x01juki"}),
        ("notice", notice, {"seq": 7, "text": "転入通知 テスト"}),
    ]


def _write_golden() -> None:
    sealer = Sealer(cs_identity(), TrustStore([cs_identity().public, pref_identity().public]))
    cases = {}
    for name, header, body in _golden_cases():
        wire = sealer.seal(header, body)
        cases[name] = {"header_hex": encode_header(header).hex(), "wire_hex": wire.hex()}
    # The reply answers the stored request wire, so its rh is that wire's hash.
    request_wire = bytes.fromhex(cases["request"]["wire_hex"])
    reply = Header(
        1, "01K5P4Z8Q0J6X3V7ZB8D9M2N4T", Kind.REPLY, "echo", PREF, CS, NOW_MS + 5, NOW_MS + 10_005,
        GOLDEN_ID, wire_hash(request_wire),
    )  # fmt: skip
    reply_wire = Sealer(pref_identity(), TrustStore([cs_identity().public])).seal(
        reply, {"ok": True, "data": {"payload": b"\x00\x01juki"}}
    )
    cases["reply"] = {"header_hex": encode_header(reply).hex(), "wire_hex": reply_wire.hex()}
    cases["request"]["wire_hash_hex"] = wire_hash(request_wire).hex()
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(cases, indent=2) + "\n")


def _golden() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN.read_text())


def test_golden_header_bytes_start_as_the_contract_says() -> None:
    # Hand-derived from the msgpack spec: fixmap of 10, "v" → 1, "id" → str of 26.
    header_bytes = bytes.fromhex(_golden()["request"]["header_hex"])
    assert header_bytes[:1] == b"\x8a"
    assert header_bytes[1:4] == b"\xa1v\x01"
    assert header_bytes[4:7] == b"\xa2id" and header_bytes[7] == 0xA0 | 26
    assert header_bytes[8:34] == GOLDEN_ID.encode()
    assert header_bytes[34:47] == b"\xa4kind\xa7request"
    assert header_bytes.endswith(b"\xa3cid\xc0\xa2rh\xc0")  # both nil for a request


@pytest.mark.parametrize("name", ["request", "notice"])
def test_golden_headers_encode_identically(name: str) -> None:
    header, _ = next((h, b) for n, h, b in _golden_cases() if n == name)
    assert encode_header(header).hex() == _golden()[name]["header_hex"]


@pytest.mark.parametrize("name", ["request", "notice"])
def test_golden_wires_still_open(name: str) -> None:
    world = make_world()
    header, body = next((h, b) for n, h, b in _golden_cases() if n == name)
    wire = bytes.fromhex(_golden()[name]["wire_hex"])
    message = world.opener.open(wire)
    assert message.header == header
    assert message.body == body
    assert message.wire == wire
    # A fresh seal of the same header differs only in the box nonce, never in the header.
    fresh = world.sealer.seal(header, body)
    assert _split(fresh)[0] == _split(wire)[0]
    assert fresh != wire


def test_golden_wire_hash_and_reply_binding() -> None:
    golden = _golden()
    request_wire = bytes.fromhex(golden["request"]["wire_hex"])
    assert wire_hash(request_wire).hex() == golden["request"]["wire_hash_hex"]
    cs = cs_identity()
    opener = Opener(
        cs,
        TrustStore([pref_identity().public]),
        route_table(),
        plumbing_types(),
        MemoryReplayGuard(skew_seconds=SKEW_SECONDS),
        skew_seconds=SKEW_SECONDS,
        clock=lambda: NOW,
    )
    reply = opener.open(bytes.fromhex(golden["reply"]["wire_hex"]))
    assert reply.header.kind is Kind.REPLY
    assert reply.header.correlation_id == GOLDEN_ID
    assert reply.header.request_hash == wire_hash(request_wire)
    assert reply.body == {"ok": True, "data": {"payload": b"\x00\x01juki"}}


# -- round trips ---------------------------------------------------------------------------------


def test_seal_open_round_trip(world: World) -> None:
    header = world.header("echo")
    wire = world.sealer.seal(header, {"payload": b"abc"})
    message = world.opener.open(wire)
    assert message == Message(header, {"payload": b"abc"}, wire)


def test_reply_header_binds_to_the_request_wire(world: World) -> None:
    wire = world.sealer.seal(world.header("ping"), {})
    request = world.opener.open(wire)
    rh = reply_header(request, ttl_seconds=5, clock=lambda: NOW)
    assert (rh.kind, rh.type, rh.sender, rh.recipient) == (Kind.REPLY, "ping", PREF, CS)
    assert rh.correlation_id == request.header.msg_id
    assert rh.request_hash == wire_hash(wire)
    reply_wire = Sealer(world.pref, world.trust).seal(
        rh, {"ok": True, "data": {"node": PREF, "time": NOW}}
    )
    cs_opener = Opener(
        world.cs, world.trust, route_table(), plumbing_types(), world.replay,
        skew_seconds=SKEW_SECONDS, clock=lambda: NOW,
    )  # fmt: skip
    assert cs_opener.open(reply_wire).body["data"]["node"] == PREF


def test_opener_does_not_remember_ids_itself(world: World) -> None:
    wire = world.sealer.seal(world.header("ping"), {})
    world.opener.open(wire)
    assert world.opener.open(wire).header.type == "ping"


def test_peek_header_is_best_effort(world: World) -> None:
    header = world.header("ping")
    wire = bytearray(world.sealer.seal(header, {}))
    wire[-1] ^= 1  # a broken body: still peekable for logging the refusal
    assert peek_header(bytes(wire)) == header
    assert peek_header(b"\x00garbage") is None


# -- one crafted message per refusal reason, in the order the receiver checks ---------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x94\x01",  # truncated
        msgpack.packb({"v": 1}),
        msgpack.packb([]),
        msgpack.packb(["1", b"", b"", b""]),
        msgpack.packb([True, b"", b"", b""]),
        msgpack.packb([1, b"h", b"s" * 64]),
        msgpack.packb([1, b"h", b"s" * 63, b"c"]),
        msgpack.packb([1, "h", b"s" * 64, b"c"]),
        msgpack.packb([1, b"\x80", b"s" * 64, b"c"]),
        msgpack.packb([1, b"h", b"s" * 64, b"c"]) + b"\x00",  # trailing data
        msgpack.packb(msgpack.ExtType(1, b"x")),
        b"\x91" * 5000,  # nesting bomb
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
    ],
)
def test_malformed_garbage(world: World, wire: bytes) -> None:
    assert _refused(world.opener, wire) is Reason.MALFORMED


def test_wire_of_the_wrong_type_is_malformed(world: World) -> None:
    assert _refused(world.opener, "a string") is Reason.MALFORMED  # type: ignore[arg-type]


def test_unknown_version_outer_and_header(world: World) -> None:
    h = _header_map(world.header("ping"))
    ct = crypto.Box(world.cs.box_secret, world.pref.box_secret.public_key).encrypt(b"\x80")
    assert _refused(world.opener, _craft(world.cs, h, ct, version=2)) is Reason.UNKNOWN_VERSION
    assert _refused(world.opener, _craft(world.cs, {**h, "v": 2}, ct)) is Reason.UNKNOWN_VERSION


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda h: {**h, "extra": 1}, "extra header field"),
        (lambda h: {k: v for k, v in h.items() if k != "cid"}, "missing header field"),
        (lambda h: {**h, "id": h["id"].lower()}, "non-canonical id"),
        (lambda h: {**h, "kind": "broadcast"}, "unknown kind"),
        (lambda h: {**h, "iat": float(h["iat"])}, "float time"),
        (lambda h: {**h, "iat": True}, "bool time"),
        (lambda h: {**h, "dl": h["iat"] - 1}, "deadline before issue"),
        (lambda h: {**h, "rh": b"\x00" * 32}, "rh on a request"),
        (lambda h: {**h, "kind": "reply"}, "reply without cid/rh"),
        (lambda h: {**h, "to": ""}, "empty recipient"),
        (lambda h: {**h, "v": "1"}, "string version"),
    ],
)
def test_malformed_headers_even_when_signed(world: World, change: Any, why: str) -> None:
    h = change(_header_map(world.header("ping")))
    ct = crypto.Box(world.cs.box_secret, world.pref.box_secret.public_key).encrypt(b"\x80")
    assert _refused(world.opener, _craft(world.cs, h, ct)) is Reason.MALFORMED, why


def test_unknown_sender(world: World) -> None:
    mallory = Identity.from_seeds("mallory", b"\x07" * 32, b"\x08" * 32)
    trust = TrustStore([mallory.public, world.pref.public])
    wire = Sealer(mallory, trust).seal(world.header("ping", sender="mallory"), {})
    assert _refused(world.opener, wire) is Reason.UNKNOWN_SENDER


def test_not_for_me(world: World) -> None:
    wire = world.sealer.seal(world.header("ping", recipient=OTHER_CS), {})
    assert _refused(world.opener, wire) is Reason.NOT_FOR_ME


def test_re_addressed_copy_keeps_a_signature_that_no_longer_verifies(world: World) -> None:
    wire = world.sealer.seal(world.header("ping", recipient=OTHER_CS), {})
    header_bytes, signature, ciphertext = _split(wire)
    readdressed = {**msgpack.unpackb(header_bytes), "to": PREF}
    forged = msgpack.packb([1, msgpack.packb(readdressed), signature, ciphertext])
    assert _refused(world.opener, forged) is Reason.BAD_SIGNATURE


def test_tampered_header_byte(world: World) -> None:
    header = world.header("ping")
    wire = world.sealer.seal(header, {})
    last = header.msg_id[-1]
    tampered_id = header.msg_id[:-1] + ("0" if last != "0" else "1")
    tampered = wire.replace(header.msg_id.encode(), tampered_id.encode())
    assert tampered != wire and peek_header(tampered) is not None
    assert _refused(world.opener, tampered) is Reason.BAD_SIGNATURE


def test_tampered_body_byte(world: World) -> None:
    wire = bytearray(world.sealer.seal(world.header("echo"), {"payload": b"x" * 100}))
    wire[-20] ^= 0x01  # inside the ciphertext
    assert _refused(world.opener, bytes(wire)) is Reason.BAD_SIGNATURE


def test_signature_by_another_known_node(world: World) -> None:
    h = _header_map(world.header("ping"))  # claims to be from the CS …
    ct = crypto.Box(world.cs.box_secret, world.pref.box_secret.public_key).encrypt(b"\x80")
    forged = _craft(world.other, h, ct)  # … but is signed by another CS
    assert _refused(world.opener, forged) is Reason.BAD_SIGNATURE


def test_expired_and_the_skew_boundary(world: World) -> None:
    header = world.header("ping", ttl_seconds=10)
    wire = world.sealer.seal(header, {})
    world.clock[0] = (header.deadline + SKEW_SECONDS * 1000) / 1000
    assert world.opener.open(wire).header == header  # exactly at deadline + skew: still valid
    world.clock[0] += 0.001
    assert _refused(world.opener, wire) is Reason.EXPIRED


def test_from_the_future(world: World) -> None:
    wire = world.sealer.seal(world.header("ping"), {})
    world.clock[0] = NOW - SKEW_SECONDS  # receiver's clock lags by exactly the skew: fine
    world.opener.open(wire)
    world.clock[0] = NOW - SKEW_SECONDS - 0.001
    assert _refused(world.opener, wire) is Reason.FROM_FUTURE


def test_replay(world: World) -> None:
    wire = world.sealer.seal(world.header("ping"), {})
    message = world.opener.open(wire)
    world.replay.remember(message.header.msg_id, message.header.deadline)
    assert _refused(world.opener, wire) is Reason.REPLAY


def test_forbidden_route(world: World) -> None:
    # pref.04 knows cs.131016 (another prefecture's CS), but no route lets it send there.
    wire = Sealer(world.other, world.trust).seal(world.header("ping", sender=OTHER_CS), {})
    assert _refused(world.opener, wire) is Reason.ROUTE_NOT_ALLOWED


def test_undecryptable_signed_by_the_right_sender_but_boxed_to_another_key(world: World) -> None:
    h = _header_map(world.header("ping"))
    wrong_box = crypto.Box(world.cs.box_secret, world.other.box_secret.public_key)
    wire = _craft(world.cs, h, wrong_box.encrypt(msgpack.packb({})))
    assert _refused(world.opener, wire) is Reason.UNDECRYPTABLE


def test_undecryptable_short_ciphertext(world: World) -> None:
    wire = _craft(world.cs, _header_map(world.header("ping")), b"tiny")
    assert _refused(world.opener, wire) is Reason.UNDECRYPTABLE


@pytest.mark.parametrize(
    ("type_", "kind", "body"),
    [
        ("echo", Kind.REQUEST, {"payload": b"x", "extra": 1}),  # extra field
        ("echo", Kind.REQUEST, {}),  # missing field
        ("echo", Kind.REQUEST, {"payload": "x"}),  # str is not bytes
        ("echo", Kind.NOTICE, {"payload": b"x"}),  # echo never travels as a notice
        ("demo.notice", Kind.NOTICE, {"seq": True, "text": "t"}),  # bool is not int
        ("demo.notice", Kind.NOTICE, {"seq": -1, "text": "t"}),  # below range
        ("demo.unknown", Kind.NOTICE, {}),  # routed by the wildcard, but no schema
    ],
)
def test_schema(world: World, type_: str, kind: Kind, body: dict[str, Any]) -> None:
    wire = world.sealer.seal(world.header(type_, kind), body)
    assert _refused(world.opener, wire) is Reason.SCHEMA


def test_body_that_is_not_msgpack_is_malformed(world: World) -> None:
    box = crypto.Box(world.cs.box_secret, world.pref.box_secret.public_key)
    wire = _craft(world.cs, _header_map(world.header("ping")), box.encrypt(b"\xc1"))
    assert _refused(world.opener, wire) is Reason.MALFORMED


def test_body_that_is_not_a_map_is_schema(world: World) -> None:
    wire = world.sealer.seal(world.header("ping"), [1, 2])  # type: ignore[arg-type]
    assert _refused(world.opener, wire) is Reason.SCHEMA


# -- the order of the checks ---------------------------------------------------------------------


def test_check_order(world: World) -> None:
    # Not for me beats a bad signature (no need to verify what we would not accept anyway).
    wire = bytearray(world.sealer.seal(world.header("ping", recipient=OTHER_CS), {}))
    wire[-1] ^= 1
    assert _refused(world.opener, bytes(wire)) is Reason.NOT_FOR_ME
    # A bad signature beats expiry: an attacker learns nothing about our clock.
    wire = bytearray(world.sealer.seal(world.header("ping"), {}))
    wire[-1] ^= 1
    world.clock[0] = NOW + 3600
    assert _refused(world.opener, bytes(wire)) is Reason.BAD_SIGNATURE
    world.clock[0] = NOW
    # Replay beats the route check; the route check beats decryption and the schema.
    other = Sealer(world.other, world.trust)
    h = world.header("nonsense", sender=OTHER_CS)
    foreign = other.seal(h, {"bad": 1})
    assert _refused(world.opener, foreign) is Reason.ROUTE_NOT_ALLOWED
    world.replay.remember(h.msg_id, h.deadline)
    assert _refused(world.opener, foreign) is Reason.REPLAY


# -- sealing errors and key rotation -------------------------------------------------------------


def test_seal_refuses_headers_that_are_not_ours_or_ill_formed(world: World) -> None:
    with pytest.raises(ValueError, match="sender"):
        world.sealer.seal(world.header("ping", sender=PREF), {})
    with pytest.raises(ValueError, match="reply needs"):
        world.sealer.seal(world.header("ping", Kind.REPLY), {})
    with pytest.raises(ValueError, match="id"):
        world.sealer.seal(replace(world.header("ping"), msg_id="nope"), {})
    with pytest.raises(KeyStoreError, match="not in the trust file"):
        world.sealer.seal(world.header("ping", recipient="pref.99"), {})


def test_rotated_recipient_box_key_is_used_at_once(world: World) -> None:
    world.sealer.seal(world.header("ping"), {})  # warm the per-peer box cache
    new_pref = Identity.from_seeds(PREF, b"\x11" * 32, b"\x12" * 32)
    world.trust.add(new_pref.public)
    wire = world.sealer.seal(world.header("ping"), {})
    new_opener = Opener(
        new_pref, world.trust, route_table(), plumbing_types(), world.replay,
        skew_seconds=SKEW_SECONDS, clock=lambda: NOW,
    )  # fmt: skip
    assert new_opener.open(wire).header.recipient == PREF
    assert _refused(world.opener, wire) is Reason.UNDECRYPTABLE  # the old key no longer opens it


# -- replay guards -------------------------------------------------------------------------------


def test_memory_guard_forgets_exactly_when_expiry_takes_over() -> None:
    clock = [100.0]
    guard = MemoryReplayGuard(skew_seconds=2, clock=lambda: clock[0])
    guard.remember("A", deadline_ms=101_000)
    assert guard.seen("A") and not guard.seen("B")
    clock[0] = 103.0  # deadline + skew: the Opener would still accept, so still remembered
    assert guard.seen("A")
    clock[0] = 103.001
    assert not guard.seen("A")
    guard.remember("C", deadline_ms=200_000)  # remembering purges what has expired
    assert len(guard) == 1


def test_memory_guard_is_bounded_and_evicts_the_soonest_to_expire() -> None:
    guard = MemoryReplayGuard(skew_seconds=0, capacity=3, clock=lambda: 0.0)
    for i, deadline in enumerate([50, 10, 40, 30]):
        guard.remember(f"id{i}", deadline_ms=deadline * 1000)
    assert len(guard) == 3 and guard.evicted_early == 1
    assert not guard.seen("id1")  # deadline 10: the first to go
    assert all(guard.seen(f"id{i}") for i in (0, 2, 3))


def test_memory_guard_keeps_the_later_deadline_when_an_id_is_remembered_twice() -> None:
    clock = [0.0]
    guard = MemoryReplayGuard(skew_seconds=0, clock=lambda: clock[0])
    guard.remember("A", deadline_ms=5_000)
    guard.remember("A", deadline_ms=1_000)
    clock[0] = 3.0
    assert guard.seen("A")


def test_combined_guard_asks_every_guard() -> None:
    memory = MemoryReplayGuard(skew_seconds=0, clock=lambda: 0.0)

    class Inbox:
        def seen(self, msg_id: str) -> bool:
            return msg_id == "in-inbox"

    combined = CombinedReplayGuard(memory, Inbox())
    memory.remember("in-memory", deadline_ms=1_000)
    assert combined.seen("in-memory") and combined.seen("in-inbox")
    assert not combined.seen("neither")


if __name__ == "__main__":
    _write_golden()
    print(f"wrote {GOLDEN}")
