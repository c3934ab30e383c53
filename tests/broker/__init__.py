"""Broker tests. This module also holds the fixed test keys and a tiny three-node world shared by
the envelope tests (a conftest would be the usual home; the keys are plain data, so a module
import keeps them visible to hypothesis tests and to the golden fixtures alike)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from broker.envelope import Header, Kind, Opener, Sealer, new_header
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
    Obj,
    Optional,
    Spec,
    Str,
    plumbing_types,
)

# Published test vectors, so the derived public keys are known answers:
# Ed25519 seeds from RFC 8032 §7.1 tests 1 and 2; X25519 secrets from RFC 7748 §6.1 (Alice, Bob).
CS_SIGN_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
CS_SIGN_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
PREF_SIGN_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
PREF_SIGN_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
CS_BOX_SECRET = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
CS_BOX_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
PREF_BOX_SECRET = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
PREF_BOX_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")

CS = "cs.041009"
PREF = "pref.04"
OTHER_CS = "cs.131016"  # a CS in another prefecture: known, but no route to pref.04
SKEW_SECONDS = 120.0
NOW = 1_790_000_000.0  # a fixed clock (2026-09-21), seconds since the epoch


def cs_identity() -> Identity:
    return Identity.from_seeds(CS, CS_SIGN_SEED, CS_BOX_SECRET)


def pref_identity() -> Identity:
    return Identity.from_seeds(PREF, PREF_SIGN_SEED, PREF_BOX_SECRET)


def other_cs_identity() -> Identity:
    return Identity.from_seeds(OTHER_CS, bytes(range(32)), bytes(range(32, 64)))


def route_table() -> RouteTable:
    """CS → its own prefecture: requests `ping`/`echo`, notices `demo.*`."""
    nodes = {
        CS: NodeInfo(CS, "municipal_cs", municipality="041009", prefecture="04"),
        OTHER_CS: NodeInfo(OTHER_CS, "municipal_cs", municipality="131016", prefecture="13"),
        PREF: NodeInfo(PREF, "prefecture", prefecture="04"),
    }
    routes = [Route("municipal_cs", "prefecture", "same_prefecture", ("ping", "echo", "demo.*"))]
    return RouteTable(routes, nodes)


@dataclass
class World:
    """CS seals to the prefecture; the prefecture opens with a fixed clock."""

    cs: Identity
    pref: Identity
    other: Identity
    trust: TrustStore
    sealer: Sealer
    opener: Opener
    replay: MemoryReplayGuard
    clock: list[float]

    def header(
        self,
        type: str = "echo",
        kind: Kind = Kind.REQUEST,
        *,
        sender: str = CS,
        recipient: str = PREF,
        ttl_seconds: float = 10.0,
        **extra: object,
    ) -> Header:
        return new_header(
            kind,
            type,
            sender,
            recipient,
            ttl_seconds=ttl_seconds,
            clock=lambda: self.clock[0],
            **extra,  # type: ignore[arg-type]
        )


def make_world() -> World:
    cs, pref, other = cs_identity(), pref_identity(), other_cs_identity()
    trust = TrustStore([cs.public, pref.public, other.public])
    clock = [NOW]
    replay = MemoryReplayGuard(skew_seconds=SKEW_SECONDS, clock=lambda: clock[0])
    opener = Opener(
        pref,
        trust,
        route_table(),
        plumbing_types(),
        replay,
        skew_seconds=SKEW_SECONDS,
        clock=lambda: clock[0],
    )
    return World(cs, pref, other, trust, Sealer(cs, trust), opener, replay, clock)


def strategy_for(spec: Spec) -> st.SearchStrategy[Any]:
    """Hypothesis values that satisfy `spec` (used for round-trip properties)."""
    if isinstance(spec, Str):
        text = st.text(max_size=min(spec.max_len, 40))
        if spec.pattern is not None:
            return st.from_regex(spec.pattern, fullmatch=True).filter(
                lambda s: len(s) <= spec.max_len
            )
        return text
    if isinstance(spec, Int):
        return st.integers(spec.lo, spec.hi)
    if isinstance(spec, Bool):
        return st.booleans()
    if isinstance(spec, Float):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(spec, Bytes):
        return st.binary(max_size=min(spec.max_len, 64))
    if isinstance(spec, Enum):
        return st.sampled_from(sorted((v for _, v in spec.values), key=repr))
    if isinstance(spec, List):
        return st.lists(strategy_for(spec.item), max_size=min(spec.max_items, 5))
    if isinstance(spec, Optional):
        return st.none() | strategy_for(spec.spec)
    if isinstance(spec, Obj):
        required = {k: strategy_for(s) for k, s in spec.fields.items() if k in spec.required}
        optional = {k: strategy_for(s) for k, s in spec.fields.items() if k not in spec.required}
        return st.fixed_dictionaries(required, optional=optional)
    raise TypeError(f"no strategy for {spec!r}")
