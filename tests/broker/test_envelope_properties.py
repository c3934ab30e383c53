"""Envelope properties: any schema-valid body round-trips; any single-byte change is refused."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.envelope import Kind, Opener, Sealer, new_header
from broker.errors import Refused
from broker.keys import TrustStore
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
from tests.broker import CS, NOW, PREF, SKEW_SECONDS, cs_identity, pref_identity, strategy_for

RICH = Obj(
    {
        "text": Str(50),
        "code": Optional(Str(12, pattern=r"[0-9]{12}")),
        "n": Int(),
        "flag": Bool(),
        "x": Float(),
        "raw": Bytes(300),
        "choice": Enum("a", "b", 3),
        "items": List(Obj({"k": Str(5), "v": Optional(Int(-5, 5))}), 4),
    }
)

CS_ID, PREF_ID = cs_identity(), pref_identity()
TRUST = TrustStore([CS_ID.public, PREF_ID.public])
REGISTRY = plumbing_types()
REGISTRY.register(MessageType("prop.rich", frozenset({Kind.REQUEST, Kind.NOTICE}), RICH, RICH))
ROUTES = RouteTable(
    [Route("municipal_cs", "prefecture", "any", ("*",))],
    {CS: NodeInfo(CS, "municipal_cs"), PREF: NodeInfo(PREF, "prefecture")},
)
SEALER = Sealer(CS_ID, TRUST)
OPENER = Opener(
    PREF_ID,
    TRUST,
    ROUTES,
    REGISTRY,
    MemoryReplayGuard(skew_seconds=SKEW_SECONDS),
    skew_seconds=SKEW_SECONDS,
    clock=lambda: NOW,
)

_NOTICE_BODY = REGISTRY.get("demo.notice").body  # type: ignore[union-attr]
BODIES = st.one_of(
    st.tuples(
        st.just("prop.rich"), st.sampled_from([Kind.REQUEST, Kind.NOTICE]), strategy_for(RICH)
    ),
    st.tuples(
        st.just("echo"), st.just(Kind.REQUEST), st.builds(dict, payload=st.binary(max_size=2000))
    ),
    st.tuples(st.just("demo.notice"), st.just(Kind.NOTICE), strategy_for(_NOTICE_BODY)),
)


def _seal(type_: str, kind: Kind, body: dict[str, Any]) -> bytes:
    header = new_header(kind, type_, CS, PREF, ttl_seconds=30, clock=lambda: NOW)
    return SEALER.seal(header, body)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_any_schema_valid_body_round_trips(case: tuple[str, Kind, dict[str, Any]]) -> None:
    type_, kind, body = case
    wire = _seal(type_, kind, body)
    message = OPENER.open(wire)
    assert message.body == body
    assert (message.header.type, message.header.kind) == (type_, kind)


WIRES = [
    _seal("echo", Kind.REQUEST, {"payload": b"\x00" * 40}),
    _seal("demo.notice", Kind.NOTICE, {"seq": 3, "text": "転出証明書情報"}),
    _seal("ping", Kind.REQUEST, {}),
]


@settings(max_examples=400)
@given(st.sampled_from(WIRES), st.data())
def test_any_single_byte_change_is_refused(wire: bytes, data: st.DataObject) -> None:
    OPENER.open(wire)  # the original is fine (the Opener never remembers ids)
    position = data.draw(st.integers(0, len(wire) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != wire[position]), label="byte")
    mutated = wire[:position] + bytes([value]) + wire[position + 1 :]
    try:
        OPENER.open(mutated)
    except Refused:
        return
    raise AssertionError(f"a wire changed at byte {position} was accepted")


@settings(max_examples=200)
@given(st.sampled_from(WIRES), st.data())
def test_any_truncation_or_extension_is_refused(wire: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(wire) - 1), label="cut")
    tail = data.draw(st.binary(min_size=1, max_size=8), label="tail")
    for mutated in (wire[:cut], wire + tail):
        try:
            OPENER.open(mutated)
        except Refused:
            continue
        raise AssertionError("a truncated or extended wire was accepted")
