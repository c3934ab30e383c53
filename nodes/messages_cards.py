"""電文一覧（カード）(card message types): CS-7 送付先情報通知, CS-8 card life-cycle events and
the card-based identity check. Kept apart from nodes/messages.py so the card work has its own file.

``cs.registry.destination`` (registry → CS) is declared in nodes/messages.py; everything after it
is here:

=================================  ======  ==================================================
type                               kind    what
=================================  ======  ==================================================
cardmgmt.cs.destination            notice  CS → 機構: the registry's 67 items, unedited (V-9)
cs.cardmgmt.destination_ack        notice  機構 → CS: received; the CS marks ``sent_at``
cardmgmt.cs.card_event             notice  CS → 機構: 交付 / 一時停止 / 一時停止解除 / 廃止 /
                                           回収 / 返還 of one card (CS-8)
cardmgmt.cs.card_state             request CS → 機構: a card's state (pre-check of an event,
                                           card status at the counter)
cardmgmt.cs.issue                  request CS → 機構: 交付 with the resident's PINs; the reply
                                           carries the card image (tui/card image format 1)
cs.op.card.event                   request terminal → CS (T-11)
cs.op.card.issue                   request terminal → CS (T-10)
cs.op.card.check                   request terminal → CS (T-03, CS-2)
=================================  ======  ==================================================

PINs travel only inside encrypted bodies (terminal → CS → 機構 → back in the image); no
handler logs or stores them.
"""

from __future__ import annotations

from broker.schema import Bool, Enum, Float, Int, List, MessageType, Obj, Optional, Spec, Str
from nodes.messages import CODE, DATE, DESTINATION, MUNI, NOTICE, NUMBER, OPERATOR, RECORD, REQUEST
from store.cards import CardEvent, CardState

SERIAL = Str(15, r"[0-9]{15}")  # カード製造番号
YMD = Str(8, r"[0-9]{8}")  # card dates are YYYYMMDD
EVENT = Enum(*(e.value for e in CardEvent))
STATE = Enum(*(s.value for s in CardState))
PINS = Obj(
    {
        "kenhojo": Str(4, r"[0-9]{4}"),  # 券面事項入力補助用暗証番号
        "juki": Str(4, r"[0-9]{4}"),  # 住民基本台帳用暗証番号
        "signing": Optional(Str(16, r"[A-Z0-9]{6,16}")),  # 署名用電子証明書の暗証番号
    }
)
CARD_IMAGE = Obj(
    {
        "format": Int(1, 1),
        "kind": Enum("mynumber"),
        "serial": SERIAL,
        "municipality_code": MUNI,
        "municipality_name": Str(100),
        "expires": YMD,
        "individual_number": NUMBER,
        "name": Str(200),
        "address": Str(300),
        "birth_date": YMD,
        "sex": Enum("0", "1", "2", "9"),
        "resident_code": CODE,
        "pins": PINS,
    }
)
"""An issued card's chip contents, exactly tui/card/image.py's format 1 (kind "mynumber")."""

CARD_SEEN = Obj(
    {
        "individual_number": NUMBER,
        "name": Str(200),
        "address": Str(300),
        "birth_date": YMD,
        "sex": Enum("0", "1", "2", "9"),
    }
)
"""What the reader got from the 券面事項入力補助AP (tui.card.reader.CardData)."""

PRESENTED = Obj(
    {
        "name_kanji": Optional(Str(200)),
        "birth_date": Optional(DATE),
        "sex": Optional(Enum("1", "2", "9")),
        "address": Optional(Str(300)),
    }
)
"""4情報 the operator read from the applicant's documents (交付通知書, 本人確認書類)."""

FIELD_RESULT = Obj(
    {
        "field": Enum("individual_number", "name", "address", "birth_date", "sex"),
        "result": Enum("match", "mismatch"),
        "previous": Bool(),  # the card's value is one the CS held for this person before
    }
)
CARD_STATE_REPLY: dict[str, Spec] = {
    "serial": SERIAL,
    "resident_code": CODE,
    "municipality_code": MUNI,
    "state": STATE,
    "allowed_events": List(EVENT, 10),
    "expires": Optional(DATE),
}


def _t(
    name: str, kinds: frozenset, body: dict[str, Spec], reply: dict[str, Spec] | None = None
) -> MessageType:
    return MessageType(name, kinds, Obj(body), Obj(reply) if reply is not None else None)


CARD_CATALOGUE: tuple[MessageType, ...] = (
    # ---- CS-7 送付先情報通知 -------------------------------------------------------------------
    _t("cardmgmt.cs.destination", NOTICE, {"record": DESTINATION}),
    _t(
        "cs.cardmgmt.destination_ack",
        NOTICE,
        {"destination_id": Str(64), "resident_code": CODE, "received_at": Float()},
    ),
    # ---- CS-8 card life cycle ---------------------------------------------------------------
    _t(
        "cardmgmt.cs.card_event",
        NOTICE,
        {
            "event": EVENT,
            "serial": SERIAL,
            "resident_code": CODE,
            "operator_id": Str(64),
            "terminal_id": Str(64),
            "on": DATE,
        },
    ),
    _t("cardmgmt.cs.card_state", REQUEST, {"serial": SERIAL}, CARD_STATE_REPLY),
    _t(
        "cardmgmt.cs.issue",
        REQUEST,
        {
            "resident_code": CODE,
            "serial": Optional(SERIAL),
            "pins": PINS,
            "operator_id": Str(64),
            "terminal_id": Str(64),
            # the CS's current record: what the chip gets (the application may be older)
            "individual_number": NUMBER,
            "name_kanji": Str(200),
            "address": Str(300),
            "birth_date": DATE,
            "sex": Enum("1", "2", "9"),
        },
        {"serial": SERIAL, "state": STATE, "expires": DATE, "image": CARD_IMAGE},
    ),
    # ---- 統合端末 → 市町村CS ----------------------------------------------------------------
    _t(
        "cs.op.card.event",
        REQUEST,
        {**OPERATOR, "event": EVENT, "serial": SERIAL, "resident_code": CODE},
        {
            "accepted": Bool(),
            "checked": Bool(),  # 機構 answered the pre-check (else the event is queued unchecked)
            "state_before": Optional(STATE),
            "state_after": Optional(STATE),
        },
    ),
    _t(
        "cs.op.card.issue",
        REQUEST,
        {
            **OPERATOR,
            "resident_code": CODE,
            "serial": Optional(SERIAL),
            "pins": PINS,
            "presented": PRESENTED,
        },
        {"serial": SERIAL, "state": STATE, "expires": DATE, "image": CARD_IMAGE},
    ),
    _t(
        "cs.op.card.check",
        REQUEST,
        {**OPERATOR, "resident_code": CODE, "card": CARD_SEEN, "serial": Optional(SERIAL)},
        {
            "verdict": Enum("match", "mismatch", "stale_card", "not_found"),
            "fields": List(FIELD_RESULT, 10),
            "record": Optional(RECORD),
            "record_status": Optional(Str(8)),
            "card_state": Optional(STATE),
            "card_usable": Optional(Bool()),
        },
    ),
)
