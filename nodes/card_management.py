"""個人番号カード管理システム (card management system, 機構): 送付先 records, card life cycle.

What it does:

- CS-7: keeps every 送付先 record a CS forwards, as received (the same map, V-9), and
  acknowledges it so the CS can start its one-business-day deletion clock.
- 申請 (application): a resident applies to 機構 directly, with the 交付申請書 mailed to the
  送付先; `cardmgmt.apply` (control command, the emulated application intake) makes a card in
  state ``applied`` from the resident's latest 送付先 record and gives it a カード製造番号.
- CS-8: applies card events from the CSs through the table in store/cards.py, refusing
  impossible ones with the card's state and the event named.
- 交付: ``cardmgmt.cs.issue`` moves an applied card to ``issued`` and answers with the card
  image — the chip contents in tui/card's image format 1 (個人番号, 4情報 from the CS's current
  record, 住民票コード, the PINs the resident chose at the counter, serial, 有効期限) — which the
  terminal writes to a file and the virtual card loads. The image is built and returned, never
  stored: 機構 keeps no PIN.

Control commands: ``cardmgmt.apply`` {resident_code, destination_id?}, ``cardmgmt.card``
{serial}, ``cardmgmt.cards`` {resident_code}, ``cardmgmt.destination`` {destination_id}.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from broker.envelope import Message
from broker.service import Context, HandlerError
from nodes.env import NodeEnv, RolePart
from store.cards import (
    Card,
    CardEvent,
    CardState,
    CardStore,
    CardTransitionError,
    allowed_events,
    card_expiry,
)

log = logging.getLogger(__name__)

IMAGE_FORMAT = 1


def _ymd(d: date | str) -> str:
    return (d if isinstance(d, date) else date.fromisoformat(d)).strftime("%Y%m%d")


def card_image(
    card: Card,
    person: Mapping[str, Any],
    pins: Mapping[str, Any],
    *,
    municipality_name: str,
    expires: date,
) -> dict[str, Any]:
    """The chip contents of an issued card (tui/card/image.py format 1, kind "mynumber").

    `person` holds the CS's current items (individual_number, name_kanji, address, birth_date
    as ISO, sex); absent optional PINs are left out rather than sent as nil.
    """
    return {
        "format": IMAGE_FORMAT,
        "kind": "mynumber",
        "serial": card.serial,
        "municipality_code": card.municipality_code,
        "municipality_name": municipality_name,
        "expires": _ymd(expires),
        "individual_number": person["individual_number"],
        "name": person["name_kanji"],
        "address": person["address"],
        "birth_date": _ymd(person["birth_date"]),
        "sex": person["sex"],
        "resident_code": card.resident_code,
        "pins": {k: v for k, v in pins.items() if v is not None},
    }


def _state_reply(card: Card) -> dict[str, Any]:
    return {
        "serial": card.serial,
        "resident_code": card.resident_code,
        "municipality_code": card.municipality_code,
        "state": card.state.value,
        "allowed_events": [e.value for e in allowed_events(card.state)],
        "expires": card.expires.isoformat() if card.expires else None,
    }


def _refusal(exc: CardTransitionError) -> HandlerError:
    return HandlerError(exc.rule, str(exc), exc.title)


def build(env: NodeEnv) -> RolePart:
    def municipality_of_sender(ctx: Context) -> str | None:
        node = env.config.nodes.get(ctx.message.header.sender)
        return node.municipality if node else None

    # ---------------------------------------------------------------- CS-7

    def on_destination(msg: Message, ctx: Context) -> None:
        record = msg.body["record"]
        for key in ("destination_id", "resident_code", "municipality_code"):
            if not isinstance(record.get(key), str):
                raise HandlerError("V-1", f"送付先 record without {key}", "送付先情報の形式誤り")
        if record["municipality_code"] != municipality_of_sender(ctx):
            raise HandlerError(
                "V-6", "a CS may only send its own municipality's 送付先", "送付元が不正です"
            )
        now = env.now()
        CardStore.receive_destination(record, sender=msg.header.sender, now=now)
        ctx.send(
            msg.header.sender,
            "cs.cardmgmt.destination_ack",
            {
                "destination_id": record["destination_id"],
                "resident_code": record["resident_code"],
                "received_at": now.timestamp(),
            },
        )

    # ---------------------------------------------------------------- CS-8

    def _get(serial: str) -> Card:
        card = CardStore.get(serial)
        if card is None:
            raise HandlerError(
                "not_found", f"no card with serial {serial}", "カードが見つかりません"
            )
        return card

    def _expiry_for(card: Card, today: date) -> date:
        destination = CardStore.destination(card.destination_number) or {}
        born = destination.get("birth_date")
        return card_expiry(date.fromisoformat(born) if born else today, today)

    def on_card_event(msg: Message, ctx: Context) -> None:
        body = msg.body
        card = _get(body["serial"])
        if card.resident_code != body["resident_code"]:
            raise HandlerError(
                "card_mismatch",
                f"card {card.serial} belongs to another 住民票コード",
                "カードと対象者が一致しません",
            )
        event = CardEvent(body["event"])
        extra: dict[str, Any] = {}
        if event is CardEvent.ISSUE:
            today = date.fromisoformat(body["on"])
            extra = {"issued_on": today, "expires": _expiry_for(card, today)}
        try:
            before, after = CardStore.apply_event(
                card.serial,
                event,
                now=env.now(),
                sender=msg.header.sender,
                operator_id=body["operator_id"],
                msg_id=msg.header.msg_id,
                **extra,
            )
        except CardTransitionError as exc:
            raise _refusal(exc) from None
        log.info("%s: card %s %s → %s", env.node_id, card.serial, before.value, after.value)

    def on_card_state(msg: Message, ctx: Context) -> dict[str, Any]:
        return _state_reply(_get(msg.body["serial"]))

    def on_issue(msg: Message, ctx: Context) -> dict[str, Any]:
        body = msg.body
        code = body["resident_code"]
        if body.get("serial"):
            card = _get(body["serial"])
            if card.resident_code != code:
                raise HandlerError(
                    "card_mismatch",
                    f"card {card.serial} was made for another 住民票コード",
                    "カードと対象者が一致しません",
                )
        else:
            applied = [c for c in CardStore.cards_of(code) if c.state is CardState.APPLIED]
            if not applied:
                raise HandlerError(
                    "no_application",
                    "no applied card waits for this resident",
                    "交付待ちのカードがありません",
                )
            card = applied[-1]
        if card.municipality_code != municipality_of_sender(ctx):
            raise HandlerError(
                "wrong_municipality",
                f"card {card.serial} is handed over by municipality {card.municipality_code}",
                "他市町村で交付するカードです",
            )
        if card.individual_number != body["individual_number"]:
            raise HandlerError(
                "number_mismatch",
                "the CS's 個人番号 differs from the one the card was made with",
                "個人番号がカード作成時と一致しません",
            )
        today = env.today()
        expires = card_expiry(date.fromisoformat(body["birth_date"]), today)
        try:
            CardStore.apply_event(
                card.serial,
                CardEvent.ISSUE,
                now=env.now(),
                sender=msg.header.sender,
                operator_id=body["operator_id"],
                msg_id=msg.header.msg_id,
                issued_on=today,
                expires=expires,
            )
        except CardTransitionError as exc:
            raise _refusal(exc) from None
        muni = env.config.municipalities.get(card.municipality_code)
        image = card_image(
            card,
            body,
            body["pins"],
            municipality_name=muni.name if muni else card.municipality_code,
            expires=expires,
        )
        return {
            "serial": card.serial,
            "state": CardState.ISSUED.value,
            "expires": expires.isoformat(),
            "image": image,
        }

    # ---------------------------------------------------------------- control commands

    def apply(req: Mapping[str, Any]) -> dict[str, Any]:
        """申請 received by 機構 (the emulated intake of a 交付申請書)."""
        code = str(req.get("resident_code") or "")
        with env.atomic():
            if req.get("destination_id"):
                destination = CardStore.destination(str(req["destination_id"]))
            else:
                destination = CardStore.latest_destination(code)
            if destination is None or (code and destination["resident_code"] != code):
                raise LookupError("no 送付先 record for this application (申請書 not sent)")
            card = CardStore.apply(
                destination,
                now=env.now(),
                sender=env.node_id,
                operator_id=str(req.get("operator_id") or "cardmgmt:intake"),
            )
        return {"serial": card.serial, "state": card.state.value}

    def card_info(req: Mapping[str, Any]) -> dict[str, Any]:
        card = CardStore.get(str(req.get("serial")))
        if card is None:
            raise LookupError("no such card")
        return {**_state_reply(card), "events": CardStore.events(card.serial)}

    def cards(req: Mapping[str, Any]) -> dict[str, Any]:
        return {"cards": [_state_reply(c) for c in CardStore.cards_of(str(req["resident_code"]))]}

    def destination(req: Mapping[str, Any]) -> dict[str, Any]:
        return {"record": CardStore.destination(str(req.get("destination_id")))}

    return RolePart(
        handlers={
            "cardmgmt.cs.destination": on_destination,
            "cardmgmt.cs.card_event": on_card_event,
            "cardmgmt.cs.card_state": on_card_state,
            "cardmgmt.cs.issue": on_issue,
        },
        commands={
            "cardmgmt.apply": apply,
            "cardmgmt.card": card_info,
            "cardmgmt.cards": cards,
            "cardmgmt.destination": destination,
        },
    )


__all__ = ["build", "card_image"]
