"""封書の耐性試験 (envelope fuzzing): hostile bytes must be refused, never crash the receiver.

Feeds random and mutated envelopes to `Opener.open`: bit flips, byte overwrites, truncations,
extensions, splices, msgpack structure mutations of the outer array and of the header (type
confusion, missing / extra / swapped fields), and bodies of confused types sealed with a valid
key so that the deep checks (decryption, body decoding, schema) are exercised too.

Every outcome is classified:

* refused, by reason — the expected outcome for nearly everything;
* accepted — an untouched corpus wire, a wire re-signed by a legitimate key (the fuzzer then
  plays a trusted node, so acceptance is correct), or an unsigned mutation that decodes to the
  very same header and body (the outer array's framing is not signed, e.g. a re-encoded int);
* forgery — an unsigned mutation accepted with a different header or body: a failure;
* crash — any exception other than `Refused`: a failure, printed with the input.

Exits 1 on any crash or forgery. Usage:
``.venv/bin/python bench/fuzz_envelope.py [--inputs 100000] [--seed 1] [--out PATH]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from broker import crypto
from broker.envelope import SIGN_CONTEXT, Kind, Message, Opener, Sealer, new_header
from broker.errors import Refused
from broker.keys import Identity, TrustStore
from broker.replay import MemoryReplayGuard
from broker.routes import NodeInfo, Route, RouteTable
from broker.schema import (
    Bool,
    Bytes,
    Enum,
    Float,
    Int,
    List,
    MessageType,
    Obj,
    Optional,
    Str,
    plumbing_types,
)

CS, PREF, OTHER = "cs.041009", "pref.04", "cs.131016"
NOW = 1_790_000_000.0
SKEW = 120.0
INTERESTING_BYTES = [
    0x00,
    0x01,
    0x7F,
    0x80,
    0x8A,
    0x94,
    0xC0,
    0xC1,
    0xC2,
    0xC3,
    0xC4,
    0xC5,
    0xC6,
    0xCC,
    0xCF,
    0xD3,
    0xD9,
    0xDB,
    0xDC,
    0xDD,
    0xDE,
    0xDF,
    0xFF,
]
INTERESTING_INTS = [
    0,
    1,
    2,
    -1,
    255,
    256,
    65535,
    2**31,
    2**32,
    2**53,
    2**63 - 1,
    2**64 - 1,
    -(2**63),
    int(NOW * 1000),
    int(NOW * 1000) + 10**9,
]
HEADER_KEYS = ["v", "id", "kind", "type", "from", "to", "iat", "dl", "cid", "rh"]

RICH = Obj(
    {
        "text": Str(50),
        "n": Int(0, 100),
        "flag": Bool(),
        "x": Float(),
        "raw": Bytes(64),
        "choice": Enum("a", "b"),
        "items": List(Obj({"k": Str(5), "v": Optional(Int())}), 4),
    }
)


class World:
    """Three nodes with fixed keys; the prefecture is the receiver under test."""

    def __init__(self) -> None:
        self.cs = Identity.from_seeds(CS, b"\x01" * 32, b"\x02" * 32)
        self.pref = Identity.from_seeds(PREF, b"\x03" * 32, b"\x04" * 32)
        self.other = Identity.from_seeds(OTHER, b"\x05" * 32, b"\x06" * 32)
        self.trust = TrustStore([self.cs.public, self.pref.public, self.other.public])
        self.keys = {CS: self.cs, PREF: self.pref, OTHER: self.other}
        routes = RouteTable(
            [
                Route(
                    "municipal_cs",
                    "prefecture",
                    "same_prefecture",
                    ("ping", "echo", "demo.*", "fuzz.*"),
                )
            ],
            {
                CS: NodeInfo(CS, "municipal_cs", municipality="041009", prefecture="04"),
                OTHER: NodeInfo(OTHER, "municipal_cs", municipality="131016", prefecture="13"),
                PREF: NodeInfo(PREF, "prefecture", prefecture="04"),
            },
        )
        schemas = plumbing_types()
        schemas.register(MessageType("fuzz.rich", frozenset({Kind.NOTICE}), RICH))
        self.replay = MemoryReplayGuard(skew_seconds=SKEW, clock=lambda: NOW)
        self.opener = Opener(
            self.pref,
            self.trust,
            routes,
            schemas,
            self.replay,
            skew_seconds=SKEW,
            clock=lambda: NOW,
        )
        self.sealers = {n: Sealer(i, self.trust) for n, i in self.keys.items()}
        self.corpus = self._corpus()
        self.accepted_by_wire: dict[bytes, Message] = {}
        for wire in self.corpus:
            with contextlib.suppress(Refused):
                self.accepted_by_wire[wire] = self.opener.open(wire)
        # One accepted message counts as seen, so replay is reachable.
        replayed = self.opener.open(self.corpus[0])
        self.replay.remember(replayed.header.msg_id, replayed.header.deadline)
        del self.accepted_by_wire[self.corpus[0]]

    def seal(self, sender: str, type_: str, kind: Kind, body: Any, **kw: Any) -> bytes:
        recipient = kw.pop("recipient", PREF)
        at = kw.pop("at", NOW)
        header = new_header(kind, type_, sender, recipient, clock=lambda: at, **kw)
        return self.sealers[sender].seal(header, body)

    def _corpus(self) -> list[bytes]:
        rq, nt = Kind.REQUEST, Kind.NOTICE
        return [
            self.seal(CS, "ping", rq, {}, ttl_seconds=30),  # becomes the replayed one
            self.seal(CS, "ping", rq, {}, ttl_seconds=30),
            self.seal(CS, "echo", rq, {"payload": b"\x00\x01" * 20}, ttl_seconds=30),
            self.seal(CS, "echo", rq, {"payload": bytes(range(256)) * 8}, ttl_seconds=30),
            self.seal(CS, "demo.notice", nt, {"seq": 1, "text": "転入通知"}, ttl_seconds=86400),
            self.seal(
                CS,
                "fuzz.rich",
                nt,
                {
                    "text": "t",
                    "n": 3,
                    "flag": True,
                    "x": 0.5,
                    "raw": b"r",
                    "choice": "a",
                    "items": [{"k": "k", "v": None}],
                },
                ttl_seconds=60,
            ),
            self.seal(OTHER, "ping", rq, {}, ttl_seconds=30),  # route not allowed
            self.seal(CS, "ping", rq, {}, ttl_seconds=30, recipient=OTHER),  # not for me
            self.seal(CS, "ping", rq, {}, ttl_seconds=10, at=NOW - 3600),  # expired
            self.seal(CS, "ping", rq, {}, ttl_seconds=10, at=NOW + 3600),  # from the future
        ]


# -- random values -------------------------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-encodable value, biased towards the types our formats confuse."""
    choice = rng.randrange(12 if depth < 3 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice(INTERESTING_INTS)
    if choice == 3:
        return rng.randint(-(2**63), 2**64 - 1)
    if choice == 4:
        return rng.choice([0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 1e308])
    if choice == 5:
        return "".join(
            chr(rng.choice([0x41, 0x7A, 0x30, 0x3042, 0x4E00, 0x1F600, 0x0]))
            for _ in range(rng.randrange(0, 40))
        )
    if choice == 6:
        return rng.randbytes(rng.choice([0, 1, 24, 32, 40, 64, 65, rng.randrange(200)]))
    if choice == 7:
        return msgpack.ExtType(rng.randrange(0, 128), rng.randbytes(rng.randrange(8)))
    if choice == 8:
        return rng.choice([*HEADER_KEYS, "payload", "seq", "text", "ok", "data", ""])
    if choice in (9, 10):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    keys = [*HEADER_KEYS, "payload", "seq", "text", "ok", "data", "code", "message", "title"]
    return {
        (rng.choice(keys) if rng.random() < 0.8 else rng.randbytes(3)): random_value(rng, depth + 1)
        for _ in range(rng.randrange(0, 6))
    }


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# -- mutators ------------------------------------------------------------------------------------
# Each returns (wire, resigned): resigned means a legitimate key signed the result.


Mutator = Callable[[World, random.Random, bytes], tuple[bytes, bool]]


def bit_flips(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    data = bytearray(wire)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data), False


def byte_overwrites(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    data = bytearray(wire)
    for _ in range(rng.choice([1, 1, 2, 4])):
        pos = rng.randrange(min(len(data), 16)) if rng.random() < 0.4 else rng.randrange(len(data))
        data[pos] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(data), False


def truncate(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    return wire[: rng.randrange(len(wire))], False


def extend(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    return wire + rng.randbytes(rng.randrange(1, 40)), False


def splice(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    other = rng.choice(world.corpus)
    return wire[: rng.randrange(len(wire) + 1)] + other[rng.randrange(len(other) + 1) :], False


def insert_delete(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    pos = rng.randrange(len(wire))
    if rng.random() < 0.5:
        return wire[:pos] + rng.randbytes(rng.randrange(1, 9)) + wire[pos:], False
    return wire[:pos] + wire[pos + rng.randrange(1, 9) :], False


def garbage(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    if rng.random() < 0.5:
        return rng.randbytes(rng.randrange(0, 400)), False
    return _pack(random_value(rng)), False


def outer_structure(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    outer = msgpack.unpackb(wire)
    op = rng.randrange(6)
    if op == 0:
        outer[rng.randrange(4)] = random_value(rng)
    elif op == 1:
        del outer[rng.randrange(len(outer))]
    elif op == 2:
        outer.insert(rng.randrange(len(outer) + 1), random_value(rng))
    elif op == 3:
        i, j = rng.randrange(4), rng.randrange(4)
        outer[i], outer[j] = outer[j], outer[i]
    elif op == 4:
        outer[0] = rng.choice([0, 2, 255, -1, 1.0, True, "1", None])
    else:
        outer = {"v": 1, "h": outer[1], "s": outer[2], "c": outer[3]}
    return _pack(outer), False


def _resign(
    world: World, rng: random.Random, header_bytes: bytes, ciphertext: bytes, sender: str | None
) -> tuple[bytes, bool]:
    """Sign as the header's claimed sender when we hold its key (a legitimate node's bug)."""
    signer = world.keys.get(sender) if isinstance(sender, str) else None
    if signer is None or rng.random() < 0.2:
        signature = rng.randbytes(64)
        return _pack([1, header_bytes, signature, ciphertext]), False
    signature = signer.signer.sign(SIGN_CONTEXT + header_bytes + ciphertext)
    return _pack([1, header_bytes, signature, ciphertext]), True


def header_structure(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    _, header_bytes, _, ciphertext = msgpack.unpackb(wire)
    header = msgpack.unpackb(header_bytes)
    op = rng.randrange(7)
    key = rng.choice(HEADER_KEYS)
    if op == 0:
        header[key] = random_value(rng)
    elif op == 1:
        header.pop(key, None)
    elif op == 2:
        header[rng.choice(["x", "body", "sig", key.upper()])] = random_value(rng)
    elif op == 3:
        header["iat"] = int(NOW * 1000) + rng.choice([-1, 1]) * rng.randrange(0, 10**7)
        header["dl"] = header["iat"] + rng.randrange(-1000, 10**7)
    elif op == 4:
        header["kind"] = rng.choice(["request", "reply", "notice", "REQUEST", ""])
        if header["kind"] == "reply" and rng.random() < 0.7:
            header["cid"], header["rh"] = header["id"], rng.randbytes(32)
    elif op == 5:
        header[rng.choice(["from", "to"])] = rng.choice([CS, PREF, OTHER, "mallory", ""])
    else:
        header["type"] = rng.choice(["ping", "echo", "demo.notice", "fuzz.rich", "demo.x", "nope"])
    if rng.random() < 0.3:  # non-canonical key order / duplicate-free reshuffle
        items = list(header.items())
        rng.shuffle(items)
        header = dict(items)
    return _resign(world, rng, _pack(header), ciphertext, header.get("from"))


def body_confusion(world: World, rng: random.Random, wire: bytes) -> tuple[bytes, bool]:
    """A legitimately sealed message whose body (or plaintext) is of confused types."""
    _, header_bytes, _, _ = msgpack.unpackb(wire)
    header = msgpack.unpackb(header_bytes)
    sender = header["from"]
    box = crypto.Box(world.keys[sender].box_secret, world.keys[header["to"]].box_secret.public_key)
    op = rng.randrange(4)
    if op == 0:
        plaintext = _pack(random_value(rng))
    elif op == 1:  # a known body with one field replaced, added or dropped
        body = {"payload": b"x", "seq": 1, "text": "t", "n": 1}
        body = dict(rng.sample(sorted(body.items()), rng.randrange(0, 5)))
        body[rng.choice(["payload", "seq", "text", "ok", "data"])] = random_value(rng)
        plaintext = _pack(body)
    elif op == 2:
        plaintext = rng.randbytes(rng.randrange(0, 64))
    else:
        plaintext = rng.choice(
            [
                b"\x91" * 3000,
                b"\xdd\xff\xff\xff\xff",
                b"\xc7\xff\x01",
                _pack({"payload": b"x"}) + b"\x00",
            ]
        )
    ciphertext = box.encrypt(plaintext)
    if rng.random() < 0.2:  # boxed to the wrong recipient key
        ciphertext = crypto.Box(
            world.keys[sender].box_secret, world.other.box_secret.public_key
        ).encrypt(plaintext)
    return _resign(world, rng, header_bytes, ciphertext, sender)


MUTATORS: list[tuple[str, Mutator, int]] = [
    ("bit_flips", bit_flips, 20),
    ("byte_overwrites", byte_overwrites, 15),
    ("truncate", truncate, 8),
    ("extend", extend, 4),
    ("splice", splice, 6),
    ("insert_delete", insert_delete, 6),
    ("garbage", garbage, 8),
    ("outer_structure", outer_structure, 10),
    ("header_structure", header_structure, 13),
    ("body_confusion", body_confusion, 10),
]


def run(
    inputs: int, seed: int, *, verbose: bool = True, world: World | None = None
) -> dict[str, Any]:
    """Fuzz `world.opener` (a fresh World unless given) with `inputs` inputs from `seed`."""
    rng = random.Random(seed)
    world = World() if world is None else world
    names = [m[0] for m in MUTATORS]
    funcs = {m[0]: m[1] for m in MUTATORS}
    weights = [m[2] for m in MUTATORS]
    refused: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    per_mutator: dict[str, Counter[str]] = {n: Counter() for n in names}
    crashes: list[dict[str, str]] = []
    forgeries: list[dict[str, str]] = []
    start = time.perf_counter()
    for _ in range(inputs):
        base = rng.choice(world.corpus)
        name = rng.choices(names, weights)[0]
        wire, resigned = funcs[name](world, rng, base)
        try:
            message = world.opener.open(wire)
        except Refused as exc:
            refused[exc.reason.value] += 1
            per_mutator[name][exc.reason.value] += 1
            continue
        except Exception as exc:
            crashes.append(
                {
                    "mutator": name,
                    "error": repr(exc),
                    "wire_hex": wire[:512].hex(),
                    "traceback": traceback.format_exc(),
                }
            )
            per_mutator[name]["crash"] += 1
            if verbose and len(crashes) <= 5:
                print(f"CRASH via {name}: {exc!r}\n{traceback.format_exc()}", file=sys.stderr)
            continue
        per_mutator[name]["accepted"] += 1
        original = world.accepted_by_wire.get(base)
        if wire in world.accepted_by_wire:
            accepted["original"] += 1
        elif resigned:
            accepted["resigned"] += 1
        elif original is not None and (message.header, message.body) == (
            original.header,
            original.body,
        ):
            accepted["equivalent_encoding"] += 1
        else:
            forgeries.append({"mutator": name, "wire_hex": wire[:512].hex()})
            if verbose:
                print(f"FORGERY via {name}: {wire[:64].hex()}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    return {
        "inputs": inputs,
        "seed": seed,
        "seconds": round(elapsed, 2),
        "inputs_per_s": round(inputs / elapsed) if elapsed else None,
        "refused": dict(sorted(refused.items())),
        "refused_total": sum(refused.values()),
        "accepted": dict(sorted(accepted.items())),
        "crashes": len(crashes),
        "forgeries": len(forgeries),
        "per_mutator": {n: dict(sorted(c.items())) for n, c in per_mutator.items()},
        "crash_samples": crashes[:20],
        "forgery_samples": forgeries[:20],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz Opener.open with hostile envelopes.")
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz_envelope.json"))
    args = parser.parse_args(argv)

    result = run(args.inputs, args.seed)
    print(
        f"{result['inputs']} inputs in {result['seconds']} s ({result['inputs_per_s']}/s), "
        f"seed {result['seed']}"
    )
    print(
        f"refused {result['refused_total']}: "
        + ", ".join(f"{k} {v}" for k, v in result["refused"].items())
    )
    print("accepted: " + (", ".join(f"{k} {v}" for k, v in result["accepted"].items()) or "none"))
    print(f"crashes {result['crashes']}, forgeries {result['forgeries']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 1 if result["crashes"] or result["forgeries"] else 0


if __name__ == "__main__":
    sys.exit(main())
