"""電文一覧 (message catalogue): every business message type of the appliance and its body.

Types are named ``<recipient role>.<sender>.<what>`` so that the route table in appliance.toml can
say who may send what by prefix (a terminal may send ``cs.op.*`` to its own CS and nothing
else). Records travel as flat maps of scalars produced by store.records' dict helpers; the map's
keys are checked here against the record layout, and the values by the store's validation, so
that a malformed update is answered with the rule it broke (V-1, V-5 …) rather than dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    Spec,
    Str,
    plumbing_types,
)
from store.records import DESTINATION_FIELDS, IDENTITY_FIELDS, PROVIDED_FIELDS

REQUEST = frozenset({Kind.REQUEST})
NOTICE = frozenset({Kind.NOTICE})

_SCALARS = (str, int, bool, float, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


class Fields(Spec):
    """A flat map of scalars whose keys come from a record layout.

    ``strict=False`` lets keys outside the layout through to the store's validation, which
    answers them with rule V-5 (field whitelist) instead of a bare schema refusal.
    """

    __slots__ = ("allowed", "max_items", "required", "strict")

    def __init__(
        self,
        allowed: Iterable[str],
        *,
        required: Iterable[str] = (),
        strict: bool = True,
        max_items: int = 120,
    ) -> None:
        self.allowed = frozenset(allowed)
        self.required = frozenset(required)
        self.strict = strict
        self.max_items = max_items

    def validate(self, value: object, path: str) -> None:
        if type(value) is not dict:
            raise Refused(Reason.SCHEMA, f"{path}: expected map")
        if len(value) > self.max_items:
            raise Refused(Reason.SCHEMA, f"{path}: more than {self.max_items} items")
        if self.allowed.issuperset(value):
            # the common case, kept flat (every update passes here at each tier, twice): keys of
            # the layout are short strings, so only the values remain to be checked
            for element in value.values():
                t = type(element)
                if t is str:
                    if len(element) > 2000:
                        break
                elif t not in _SCALAR_TYPES:
                    break
            else:
                if self.required and not self.required.issubset(value):
                    self._check(value, path)
                return
        self._check(value, path)

    def _check(self, value: dict[object, object], path: str) -> None:
        """The checks one by one, naming the first thing wrong."""
        for key, element in value.items():
            if type(key) is not str or len(key) > 64:
                raise Refused(Reason.SCHEMA, f"{path}: keys must be short strings")
            if self.strict and key not in self.allowed:
                raise Refused(Reason.SCHEMA, f"{path}: unexpected field {key!r}")
            if not isinstance(element, _SCALARS):
                raise Refused(Reason.SCHEMA, f"{path}.{key}: expected a scalar")
            if isinstance(element, str) and len(element) > 2000:
                raise Refused(Reason.SCHEMA, f"{path}.{key}: too long")
        missing = self.required.difference(value)
        if missing:
            raise Refused(Reason.SCHEMA, f"{path}: missing field {sorted(missing)[0]!r}")


CODE = Str(11, r"[0-9]{11}")  # 住民票コード
NUMBER = Str(12, r"[0-9]{12}")  # 個人番号
MUNI = Str(6, r"[0-9]{6}")  # 市町村コード
REQNO = Str(64)  # 依頼管理番号
DATE = Str(10, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
RECORD = Fields(IDENTITY_FIELDS)
PROVIDED = Fields(PROVIDED_FIELDS, required=("resident_code", "sequence"))
DESTINATION = Fields(DESTINATION_FIELDS)
VIOLATION = Obj({"rule": Str(16), "field": Optional(Str(64)), "message": Str(500)})
VIOLATIONS = List(VIOLATION, 100)
CRITERIA = Obj(
    {
        "name_kanji": Optional(Str(200)),
        "name_kana": Optional(Str(200)),
        "address": Optional(Str(300)),
        "birth_date": Optional(DATE),
        "sex": Optional(Enum("1", "2", "9")),
    }
)
# Every operator request says who, where and why: 事務種別 and 処理事由 go into the usage log.
OPERATOR = {
    "operator_id": Str(64),
    "task": Str(100),  # 事務種別
    "reason": Str(200),  # 処理事由
    "session": Optional(Str(128)),
    # the session key's signature over the command (evidence kept with the usage-log row)
    "signature": Optional(Bytes(64)),
}
QUERY_KEY = Obj(
    {
        "by": Enum("resident_code", "individual_number", "4info"),
        "resident_code": Optional(CODE),
        "individual_number": Optional(NUMBER),
        "criteria": Optional(CRITERIA),
    }
)
RECORDS_REPLY = Obj({"records": List(PROVIDED, 1000), "truncated": Bool()})
DIGEST_REQ = Obj(
    {
        "municipality": MUNI,
        "session": Str(64),
        "prefixes": List(Str(11, r"[0-9]{0,11}"), 100_000),
        "leaves": Bool(),
    }
)
DIGEST_REPLY = Obj(
    {
        "digests": List(Obj({"prefix": Str(11), "hash": Bytes(32), "count": Int(0)}), 100_000),
        "leaves": List(Obj({"code": CODE, "hash": Bytes(32)}), 100_000),
        "total": Int(0),
        # the tier is still building the session's tree (off its service loop): ask again
        # after this many ms; digests and leaves are empty meanwhile
        "pending": Optional(Int(1, 60_000)),
    }
)


def _t(
    name: str, kinds: frozenset[Kind], body: dict[str, Spec], reply: dict[str, Spec] | None = None
) -> MessageType:
    return MessageType(name, kinds, Obj(body), Obj(reply) if reply is not None else None)


CATALOGUE: tuple[MessageType, ...] = (
    # ---- 既存住基システム → 市町村CS (V-6: the registry is the only source) -----------------
    _t("cs.registry.identity_update", NOTICE, {"update": Fields(IDENTITY_FIELDS, strict=False)}),
    _t(
        "cs.registry.moveout_certificate",
        NOTICE,
        {"resident_code": CODE, "to_municipality": MUNI, "planned_on": DATE, "record": RECORD},
    ),
    _t(
        "cs.registry.movein_notice",
        NOTICE,
        {
            "resident_code": CODE,
            "from_municipality": MUNI,
            "moved_in_on": DATE,
            "new_address": Str(300),
        },
    ),
    _t("cs.registry.number_request", NOTICE, {"resident_code": CODE, "request_number": REQNO}),
    _t("cs.registry.destination", NOTICE, {"record": DESTINATION}),
    # ---- 市町村CS → 既存住基システム ---------------------------------------------------------
    _t(
        "registry.cs.update_result",
        NOTICE,
        {"request_number": REQNO, "resident_code": CODE, "ok": Bool(), "violations": VIOLATIONS},
    ),
    _t(
        "registry.cs.number_result",
        NOTICE,
        {
            "request_number": REQNO,
            "resident_code": CODE,
            "ok": Bool(),
            "individual_number": Optional(NUMBER),
            "violations": VIOLATIONS,
        },
    ),
    _t(
        "registry.cs.movein_notice",
        NOTICE,
        {"resident_code": CODE, "to_municipality": MUNI, "moved_in_on": DATE},
    ),
    _t(
        "registry.cs.tokurei_movein",
        NOTICE,
        {
            "resident_code": CODE,
            "from_municipality": MUNI,
            "record": RECORD,
            "new_address": Str(300),
            "moved_in_on": DATE,
            "operator_id": Str(64),
        },
    ),
    _t(
        "registry.cs.code_change",
        NOTICE,
        {"old_resident_code": CODE, "new_resident_code": CODE, "operator_id": Str(64)},
    ),
    # ---- 市町村CS ↔ 他市町村CS (住基法24条の2, 特例転入) ---------------------------------------
    _t(
        "cs.transfer.moveout_certificate",
        NOTICE,
        {"resident_code": CODE, "from_municipality": MUNI, "planned_on": DATE, "record": RECORD},
    ),
    _t(
        "cs.transfer.movein_notice",
        NOTICE,
        {"resident_code": CODE, "to_municipality": MUNI, "moved_in_on": DATE},
    ),
    # ---- 市町村CS → 都道府県サーバ (30条の6) → 全国サーバ (30条の11) --------------------------
    _t("pref.cs.identity_update", NOTICE, {"provided": PROVIDED, "repair": Optional(Bool())}),
    _t("national.pref.identity_update", NOTICE, {"provided": PROVIDED, "repair": Optional(Bool())}),
    _t(
        "pref.cs.query",
        REQUEST,
        {"key": QUERY_KEY, "requester": MUNI},
        {"records": RECORDS_REPLY.fields["records"], "truncated": Bool()},
    ),
    _t(
        "national.pref.query",
        REQUEST,
        {"key": QUERY_KEY, "requester": MUNI},
        {"records": RECORDS_REPLY.fields["records"], "truncated": Bool()},
    ),
    _t("pref.cs.digest", REQUEST, DIGEST_REQ.fields, DIGEST_REPLY.fields),
    _t("national.cs.digest", REQUEST, DIGEST_REQ.fields, DIGEST_REPLY.fields),
    _t(
        "pref.cs.records",
        REQUEST,
        {"municipality": MUNI, "codes": List(CODE, 10_000)},
        {"records": List(PROVIDED, 10_000)},
    ),
    _t(
        "national.cs.records",
        REQUEST,
        {"municipality": MUNI, "codes": List(CODE, 10_000)},
        {"records": List(PROVIDED, 10_000)},
    ),
    # ---- 市町村CS ↔ 全国サーバ (番号法8条: numbers; 住民票コード candidates) -----------------
    _t(
        "national.cs.number_request",
        NOTICE,
        {"resident_code": CODE, "request_number": REQNO, "municipality": MUNI},
    ),
    _t(
        "cs.national.number_answer",
        NOTICE,
        {
            "resident_code": CODE,
            "request_number": REQNO,
            "individual_number": Optional(NUMBER),
            "error": Optional(Str(500)),
            # national's own 4情報 for the CS's V-11 match
            "name_kanji": Optional(Str(200)),
            "birth_date": Optional(DATE),
            "sex": Optional(Str(1)),
            "address": Optional(Str(300)),
        },
    ),
    _t(
        "national.cs.code_candidates",
        REQUEST,
        {"municipality": MUNI, "count": Int(1, 20)},
        {"codes": List(CODE, 20)},
    ),
    # ---- 統合端末 → 市町村CS (operator requests; checked and logged by the CS) ---------------
    _t(
        "cs.op.search",
        REQUEST,
        {**OPERATOR, "criteria": CRITERIA, "limit": Optional(Int(1, 1000))},
        {"records": List(RECORD, 1000), "truncated": Bool()},
    ),
    _t(
        "cs.op.lookup",
        REQUEST,
        {**OPERATOR, "resident_code": CODE},
        {"record": Optional(RECORD), "history": List(Obj({"no": Int(0), "record": RECORD}), 1000)},
    ),
    _t(
        "cs.op.number.reveal",
        REQUEST,
        {**OPERATOR, "resident_code": CODE},
        {"individual_number": Optional(NUMBER)},
    ),
    _t(
        "cs.op.output",
        REQUEST,
        {
            **OPERATOR,
            "kind": Str(100),
            "target": Str(100),
            "medium": Enum("file", "print", "media"),
        },
        {"recorded": Bool()},
    ),
    _t(
        "cs.op.national_query",
        REQUEST,
        {**OPERATOR, "key": QUERY_KEY},
        {"records": List(PROVIDED, 1000), "truncated": Bool()},
    ),
    _t(
        "cs.op.code_candidates",
        REQUEST,
        {**OPERATOR, "resident_code": CODE},
        {"codes": List(CODE, 20)},
    ),
    _t(
        "cs.op.code_change",
        REQUEST,
        {**OPERATOR, "resident_code": CODE, "new_resident_code": CODE},
        {"accepted": Bool()},
    ),
    _t(
        "cs.op.pending_moveouts",
        REQUEST,
        {**OPERATOR},
        {
            "pending": List(
                Obj(
                    {
                        "resident_code": CODE,
                        "from_municipality": MUNI,
                        "planned_on": DATE,
                        "received_at": Float(),
                        "name_kanji": Str(200),
                    }
                ),
                10_000,
            )
        },
    ),
    _t(
        "cs.op.tokurei_movein",
        REQUEST,
        {**OPERATOR, "resident_code": CODE, "new_address": Str(300), "moved_in_on": DATE},
        {"accepted": Bool()},
    ),
    _t(
        "cs.op.statistics",
        REQUEST,
        {**OPERATOR, "since": Optional(DATE)},
        {
            "by_day_and_reason": List(
                Obj({"day": DATE, "reason": Str(20), "count": Int(0)}), 100_000
            )
        },
    ),
)


def registry() -> SchemaRegistry:
    """The plumbing types plus the whole catalogue (every node understands every type; the
    route table, not the schema, decides who may send what)."""
    from nodes.messages_cards import CARD_CATALOGUE
    from nodes.messages_sessions import SESSION_CATALOGUE
    from nodes.messages_tasks import TASK_CATALOGUE

    reg = plumbing_types()
    for mt in (*CATALOGUE, *CARD_CATALOGUE, *SESSION_CATALOGUE, *TASK_CATALOGUE):
        reg.register(mt)
    return reg


__all__ = ["CATALOGUE", "Bytes", "Fields", "Float", "registry"]
