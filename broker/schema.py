"""電文様式 (body schemas): what each message type may carry, checked on every receipt.

Small schema objects of our own rather than a validation library: they are strict (unknown fields
refused, bool is not an int, str is not bytes), cheap on the hot path, and their error details
name the path but never echo the value, because a value may be a 個人番号 and details are logged.

Node message types are declared in nodes/messages.py; this module declares only the plumbing
types (`ping`, `echo`, `demo.notice` and the `bundle` carrier, see `plumbing_types`).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker.errors import Reason, Refused

_TYPE_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


class Kind(StrEnum):
    """The three kinds of message (DESIGN §3): RPC request and reply, durable one-way notice."""

    REQUEST = "request"
    REPLY = "reply"
    NOTICE = "notice"


def _refuse(path: str, problem: str) -> Refused:
    return Refused(Reason.SCHEMA, f"{path}: {problem}")


def _type_name(value: object) -> str:
    return "nil" if value is None else type(value).__name__


class Spec(ABC):
    """A schema node. `validate` raises Refused(Reason.SCHEMA) naming `path` on mismatch.

    `ok` answers the same question without naming anything: the hot path asks it first and only
    a body that fails is walked again by `validate` for the detail, so a valid body costs no
    path strings. Subclasses that only define `validate` get a correct (slower) `ok`.
    """

    __slots__ = ()

    @abstractmethod
    def validate(self, value: object, path: str) -> None: ...

    def ok(self, value: object) -> bool:
        try:
            self.validate(value, "")
        except Refused:
            return False
        return True


class Str(Spec):
    __slots__ = ("max_len", "pattern")

    def __init__(self, max_len: int, pattern: str | None = None) -> None:
        self.max_len = max_len
        self.pattern = re.compile(pattern) if pattern is not None else None

    def ok(self, value: object) -> bool:
        return (
            type(value) is str
            and len(value) <= self.max_len
            and (self.pattern is None or self.pattern.fullmatch(value) is not None)
        )

    def validate(self, value: object, path: str) -> None:
        if type(value) is not str:
            raise _refuse(path, f"expected str, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise _refuse(path, f"longer than {self.max_len} characters")
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            raise _refuse(path, "does not match the required pattern")


class Int(Spec):
    __slots__ = ("hi", "lo")

    def __init__(self, lo: int = -(2**63), hi: int = 2**63 - 1) -> None:
        self.lo = lo
        self.hi = hi

    def ok(self, value: object) -> bool:
        return type(value) is int and self.lo <= value <= self.hi

    def validate(self, value: object, path: str) -> None:
        if type(value) is not int:
            raise _refuse(path, f"expected int, got {_type_name(value)}")
        if not self.lo <= value <= self.hi:
            raise _refuse(path, f"outside {self.lo}..{self.hi}")


class Bool(Spec):
    __slots__ = ()

    def ok(self, value: object) -> bool:
        return type(value) is bool

    def validate(self, value: object, path: str) -> None:
        if type(value) is not bool:
            raise _refuse(path, f"expected bool, got {_type_name(value)}")


class Float(Spec):
    """A finite float. Ints are refused (a sender that means a float sends one); NaN and
    infinities are refused because no field of ours has a meaning for them."""

    __slots__ = ()

    def ok(self, value: object) -> bool:
        return type(value) is float and math.isfinite(value)

    def validate(self, value: object, path: str) -> None:
        if type(value) is not float:
            raise _refuse(path, f"expected float, got {_type_name(value)}")
        if not math.isfinite(value):
            raise _refuse(path, "not a finite number")


class Bytes(Spec):
    __slots__ = ("max_len",)

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def ok(self, value: object) -> bool:
        return type(value) is bytes and len(value) <= self.max_len

    def validate(self, value: object, path: str) -> None:
        if type(value) is not bytes:
            raise _refuse(path, f"expected bytes, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise _refuse(path, f"longer than {self.max_len} bytes")


class Enum(Spec):
    """One of fixed str or int values (compared with their type, so True is not 1)."""

    __slots__ = ("values",)

    def __init__(self, *values: str | int) -> None:
        if not values:
            raise ValueError("Enum needs at least one value")
        self.values = frozenset((type(v), v) for v in values)

    def ok(self, value: object) -> bool:
        try:
            return (type(value), value) in self.values
        except TypeError:  # an unhashable value (a list or map) is never one of them
            return False

    def validate(self, value: object, path: str) -> None:
        if not self.ok(value):
            raise _refuse(path, "not one of the allowed values")


class List(Spec):
    __slots__ = ("item", "max_items")

    def __init__(self, item: Spec, max_items: int) -> None:
        self.item = item
        self.max_items = max_items

    def ok(self, value: object) -> bool:
        if type(value) is not list or len(value) > self.max_items:
            return False
        return all(map(self.item.ok, value))

    def validate(self, value: object, path: str) -> None:
        if type(value) is not list:
            raise _refuse(path, f"expected list, got {_type_name(value)}")
        if len(value) > self.max_items:
            raise _refuse(path, f"more than {self.max_items} items")
        item = self.item
        for i, element in enumerate(value):
            item.validate(element, f"{path}[{i}]")


class Optional(Spec):
    """`spec` or nil; inside an Obj the key may also be absent."""

    __slots__ = ("spec",)

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def ok(self, value: object) -> bool:
        return value is None or self.spec.ok(value)

    def validate(self, value: object, path: str) -> None:
        if value is not None:
            self.spec.validate(value, path)


class Obj(Spec):
    """A map with exactly the declared fields (Optional ones may be absent); others refused."""

    __slots__ = ("fields", "required")

    def __init__(self, fields: Mapping[str, Spec]) -> None:
        self.fields = dict(fields)
        self.required = frozenset(k for k, s in self.fields.items() if not isinstance(s, Optional))

    def ok(self, value: object) -> bool:
        if type(value) is not dict:
            return False
        fields = self.fields
        for key, element in value.items():
            spec = fields.get(key) if type(key) is str else None
            if spec is None or not spec.ok(element):
                return False
        return len(value) >= len(fields) or not self.required.difference(value)

    def validate(self, value: object, path: str) -> None:
        if self.ok(value):
            return
        if type(value) is not dict:
            raise _refuse(path, f"expected map, got {_type_name(value)}")
        fields = self.fields
        for key, element in value.items():
            spec = fields.get(key) if type(key) is str else None
            if spec is None:
                # Only identifier-like names are echoed: a key could itself be personal data.
                shown = key if type(key) is str and _FIELD_RE.fullmatch(key) else "<unnamed>"
                raise _refuse(path, f"unexpected field {shown!r}")
            spec.validate(element, f"{path}.{key}")
        if len(value) < len(fields):
            missing = sorted(self.required.difference(value))
            if missing:
                raise _refuse(path, f"missing field {missing[0]!r}")


class Map(Spec):
    """Any map with string keys, its contents left to a schema applied later.

    Only the `bundle` carrier uses it: each item's body is checked against its own type's schema
    once the item's type is known (broker/bundle.py), so nothing goes unchecked.
    """

    __slots__ = ()

    def ok(self, value: object) -> bool:
        return type(value) is dict and all(type(k) is str for k in value)

    def validate(self, value: object, path: str) -> None:
        if type(value) is not dict:
            raise _refuse(path, f"expected map, got {_type_name(value)}")
        if not all(type(k) is str for k in value):
            raise _refuse(path, "map keys must be strings")


@dataclass(frozen=True, slots=True)
class MessageType:
    """A message type: its name, the kinds it travels as, its body and (requests) reply data.

    Replies are not listed in `kinds`: every request type implies its reply, which travels under
    the same type name. A request type without a `reply` schema answers with empty data ({}).
    """

    name: str
    kinds: frozenset[Kind]
    body: Obj
    reply: Obj | None = None

    def __post_init__(self) -> None:
        if not _TYPE_NAME_RE.fullmatch(self.name) or len(self.name) > 64:
            raise ValueError(f"bad message type name {self.name!r}")
        if not self.kinds or Kind.REPLY in self.kinds:
            raise ValueError(f"{self.name}: kinds must be request and/or notice")
        if self.reply is not None and Kind.REQUEST not in self.kinds:
            raise ValueError(f"{self.name}: only request types have a reply schema")


ECHO_MAX = 1 << 20
BUNDLE = "bundle"
"""The carrier type: several notices from one sender to one recipient under one envelope."""
BUNDLE_MAX_ITEMS = 512
_EMPTY = Obj({})
_REPLY_ERROR = Obj({"ok": Bool(), "code": Str(100), "message": Str(4000), "title": Str(200)})


class SchemaRegistry:
    """The message types a node understands."""

    def __init__(self, types: Iterable[MessageType] = ()) -> None:
        self._types: dict[str, MessageType] = {}
        self._ok_replies: dict[str, Obj] = {}
        for mt in types:
            self.register(mt)

    def register(self, mt: MessageType) -> None:
        if mt.name in self._types:
            raise ValueError(f"message type {mt.name!r} registered twice")
        self._types[mt.name] = mt
        if Kind.REQUEST in mt.kinds:
            data = mt.reply if mt.reply is not None else _EMPTY
            self._ok_replies[mt.name] = Obj({"ok": Bool(), "data": data})

    def get(self, name: str) -> MessageType | None:
        return self._types.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._types))

    def validate_body(self, header: Any, body: object) -> None:
        """Check `body` against the schema for `header.type` and `header.kind`.

        A reply carries its request's type; its body is `{"ok": True, "data": <reply schema>}`
        or `{"ok": False, "code", "message", "title"}`.

        Raises:
            Refused: Reason.SCHEMA, naming the offending path.
        """
        mt = self._types.get(header.type)
        if mt is None:
            raise Refused(Reason.SCHEMA, f"unknown message type {header.type!r}")
        kind = header.kind
        if kind == Kind.REPLY:
            if Kind.REQUEST not in mt.kinds:
                raise Refused(Reason.SCHEMA, f"{mt.name} is not a request type; no reply exists")
            if type(body) is not dict:
                raise _refuse("body", f"expected map, got {_type_name(body)}")
            ok = body.get("ok")
            if ok is True:
                self._ok_replies[mt.name].validate(body, "body")
            elif ok is False:
                _REPLY_ERROR.validate(body, "body")
            else:
                raise _refuse("body.ok", "expected true or false")
            return
        if kind not in mt.kinds:
            raise Refused(Reason.SCHEMA, f"{mt.name} does not travel as a {kind}")
        mt.body.validate(body, "body")


def plumbing_types(registry: SchemaRegistry | None = None) -> SchemaRegistry:
    """Register the broker's own types into `registry` (a new one if None) and return it.

    `ping` (liveness and RPC latency), `echo` (payload round trips for throughput; bytes, since
    it exists to measure the wire with arbitrary payloads), `demo.notice` (durable notices),
    `bundle` (the outbox relay's carrier of several notices, broker/bundle.py).
    """
    registry = SchemaRegistry() if registry is None else registry
    registry.register(
        MessageType(
            "ping",
            frozenset({Kind.REQUEST}),
            Obj({}),
            reply=Obj({"node": Str(64), "time": Float()}),
        )
    )
    registry.register(
        MessageType(
            "echo",
            frozenset({Kind.REQUEST}),
            Obj({"payload": Bytes(ECHO_MAX)}),
            reply=Obj({"payload": Bytes(ECHO_MAX)}),
        )
    )
    registry.register(
        MessageType(
            "demo.notice", frozenset({Kind.NOTICE}), Obj({"seq": Int(0), "text": Str(1000)})
        )
    )
    registry.register(
        MessageType(
            BUNDLE,
            frozenset({Kind.NOTICE}),
            Obj(
                {
                    "items": List(
                        Obj(
                            {
                                "id": Str(26),
                                "type": Str(64),
                                "cid": Optional(Str(64)),
                                "body": Map(),
                            }
                        ),
                        BUNDLE_MAX_ITEMS,
                    )
                }
            ),
        )
    )
    return registry
