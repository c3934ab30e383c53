"""Body schemas: strict types, paths in refusals, no value echoed, reply shapes, plumbing types."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings

from broker.errors import Reason, Refused
from broker.schema import (
    Bool,
    Bytes,
    Enum,
    Float,
    Int,
    Kind,
    List,
    MessageType,
    Obj,
    Optional,
    SchemaRegistry,
    Str,
    plumbing_types,
)
from tests.broker import strategy_for

RICH = Obj(
    {
        "name": Str(20),
        "code": Str(6, pattern=r"[0-9]{6}"),
        "count": Int(0, 1000),
        "flag": Bool(),
        "ratio": Float(),
        "blob": Bytes(16),
        "sex": Enum("1", "2", "9"),
        "level": Enum(1, 2, 3),
        "tags": List(Str(10), 4),
        "nested": Obj({"a": Int(), "b": Optional(Str(5))}),
        "maybe": Optional(Int(0, 9)),
        "rows": List(Obj({"x": Int(0, 9)}), 3),
    }
)


def _detail(spec: Any, value: object, path: str = "body") -> str:
    with pytest.raises(Refused) as info:
        spec.validate(value, path)
    assert info.value.reason is Reason.SCHEMA
    return info.value.detail


@settings(max_examples=150)
@given(strategy_for(RICH))
def test_any_valid_value_validates_and_survives_msgpack(value: dict[str, Any]) -> None:
    RICH.validate(value, "body")
    again = msgpack.unpackb(msgpack.packb(value), raw=False)
    RICH.validate(again, "body")
    assert again == value


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (Str(3), "abcd", "body: longer than 3 characters"),
        (Str(3), b"abc", "body: expected str, got bytes"),
        (Str(6, pattern=r"[0-9]{6}"), "12345a", "body: does not match the required pattern"),
        (Int(0, 9), 10, "body: outside 0..9"),
        (Int(0, 9), True, "body: expected int, got bool"),
        (Int(0, 9), 1.0, "body: expected int, got float"),
        (Bool(), 1, "body: expected bool, got int"),
        (Float(), 1, "body: expected float, got int"),
        (Float(), float("nan"), "body: not a finite number"),
        (Float(), float("inf"), "body: not a finite number"),
        (Bytes(2), b"abc", "body: longer than 2 bytes"),
        (Bytes(2), "ab", "body: expected bytes, got str"),
        (Enum("1", "2"), 1, "body: not one of the allowed values"),
        (Enum(1, 2), True, "body: not one of the allowed values"),
        (List(Int(), 2), [1, 2, 3], "body: more than 2 items"),
        (List(Int(), 2), (1, 2), "body: expected list, got tuple"),
        (List(Int(0, 5), 3), [1, 9], "body[1]: outside 0..5"),
        (Obj({"a": Int()}), {"a": 1, "b": 2}, "body: unexpected field 'b'"),
        (Obj({"a": Int()}), {}, "body: missing field 'a'"),
        (Obj({"a": Int()}), {1: 1}, "body: unexpected field '<unnamed>'"),
        (Obj({"a": Int()}), None, "body: expected map, got nil"),
        (Obj({"a": Obj({"b": List(Str(1), 3)})}), {"a": {"b": ["x", 5]}}, "body.a.b[1]"),
        (Optional(Int(0, 1)), 2, "body: outside 0..1"),
    ],
)
def test_refusals_name_the_path(spec: Any, value: object, expected: str) -> None:
    assert _detail(spec, value).startswith(expected)


def test_optional_field_may_be_absent_or_nil_but_not_wrong() -> None:
    spec = Obj({"a": Int(), "b": Optional(Str(3))})
    spec.validate({"a": 1}, "body")
    spec.validate({"a": 1, "b": None}, "body")
    spec.validate({"a": 1, "b": "xyz"}, "body")
    assert "body.b" in _detail(spec, {"a": 1, "b": 5})
    assert "missing field 'a'" in _detail(spec, {"b": "x"})


def test_details_never_echo_the_value() -> None:
    # A value may be a 個人番号; details are logged, so they carry the path only.
    secret = "123456789018"
    for spec in (Str(5), Str(20, pattern=r"[a-z]+"), Enum("a"), Int(0, 9)):
        assert secret not in _detail(spec, secret if not isinstance(spec, Int) else 123456789018)
    assert secret not in _detail(Obj({}), {secret: 1})
    assert "x" * 50 not in _detail(Obj({}), {"x" * 50: 1})
    assert "'extra'" in _detail(Obj({}), {"extra": 1})  # plain field names are shown


# -- message types and the registry --------------------------------------------------------------


def _header(type_: str, kind: Kind) -> Any:
    return SimpleNamespace(type=type_, kind=kind)


def test_plumbing_types() -> None:
    registry = plumbing_types()
    assert registry.names() == ("bundle", "demo.notice", "echo", "ping")
    registry.validate_body(_header("ping", Kind.REQUEST), {})
    registry.validate_body(_header("echo", Kind.REQUEST), {"payload": b"\x00" * 100})
    registry.validate_body(_header("demo.notice", Kind.NOTICE), {"seq": 1, "text": "転入"})
    registry.validate_body(
        _header("ping", Kind.REPLY), {"ok": True, "data": {"node": "pref.04", "time": 1.5}}
    )


def test_plumbing_types_register_into_an_existing_registry() -> None:
    registry = SchemaRegistry([MessageType("x.y", frozenset({Kind.NOTICE}), Obj({}))])
    assert plumbing_types(registry) is registry
    assert "x.y" in registry.names() and "ping" in registry.names()


def _refuse_body(registry: SchemaRegistry, type_: str, kind: Kind, body: object) -> str:
    with pytest.raises(Refused) as info:
        registry.validate_body(_header(type_, kind), body)
    assert info.value.reason is Reason.SCHEMA
    return info.value.detail


def test_registry_refusals() -> None:
    registry = plumbing_types()
    assert "unknown message type" in _refuse_body(registry, "nope", Kind.REQUEST, {})
    assert "does not travel as a notice" in _refuse_body(registry, "ping", Kind.NOTICE, {})
    assert "not a request type" in _refuse_body(
        registry, "demo.notice", Kind.REPLY, {"ok": True, "data": {}}
    )


@pytest.mark.parametrize(
    "body",
    [
        {"ok": True, "data": {"node": "n"}},  # reply data missing a field
        {"ok": True, "data": {"node": "n", "time": 1.0}, "extra": 1},
        {"ok": True},
        {"ok": "yes", "data": {}},
        {"ok": False, "code": "E1", "message": "m"},  # error reply missing its title
        {"ok": False, "code": "E1", "message": "m", "title": "t", "data": {}},
        {"data": {"node": "n", "time": 1.0}},
        [True],
    ],
)
def test_reply_shapes_are_enforced(body: object) -> None:
    _refuse_body(plumbing_types(), "ping", Kind.REPLY, body)


def test_error_reply_shape() -> None:
    plumbing_types().validate_body(
        _header("echo", Kind.REPLY),
        {"ok": False, "code": "not_found", "message": "該当なし", "title": "検索結果なし"},
    )


def test_request_without_reply_schema_answers_with_empty_data() -> None:
    registry = SchemaRegistry([MessageType("cs.op.logout", frozenset({Kind.REQUEST}), Obj({}))])
    registry.validate_body(_header("cs.op.logout", Kind.REPLY), {"ok": True, "data": {}})
    _refuse_body(registry, "cs.op.logout", Kind.REPLY, {"ok": True, "data": {"x": 1}})


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("Bad Name", frozenset({Kind.NOTICE}), Obj({})), "bad message type name"),
        (("a", frozenset({Kind.REPLY}), Obj({})), "kinds must be"),
        (("a", frozenset(), Obj({})), "kinds must be"),
        (("a", frozenset({Kind.NOTICE}), Obj({}), Obj({})), "only request types"),
    ],
)
def test_message_type_declarations_are_checked(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MessageType(*args)


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        plumbing_types(plumbing_types())


def test_none_is_not_a_body() -> None:
    _refuse_body(plumbing_types(), "ping", Kind.REQUEST, None)
