"""市町村CSのカード関連処理 (the CS's card functions): CS-7, CS-8 and the card identity check.

CS-7 送付先情報通知: the registry's 67-item record is checked (all items present, 項目長 agree
with their texts, this municipality's resident, 4情報 + 個人番号 current against file (2)), kept
in file (3) exactly as received and forwarded to 機構 as the same map (V-9 「編集を加えず」).
機構's acknowledgement sets ``sent_at``; store/retention.py deletes the record one business day
later. The check runs against the CS's own file only: national's copy trails the CS by the
prefecture hop, so comparing with it right after a 個人番号指定 would refuse good records.

CS-8: operator events are pre-checked against 機構's state of the card (so an impossible event
is refused at the counter, naming the card's state) and then sent as a durable notice; 機構
enforces the same table again when it applies the event. 交付 goes through ``cs.op.card.issue``,
which identifies the applicant against the documents shown and asks 機構 for the card image
(the chip's contents, with the PINs the resident chose).

T-03 card check: what the card said is compared field by field with file (2); a card whose
differing items are all values this person held before (a 転居 since the card was written) is a
``stale_card``, anything else that differs is a ``mismatch``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from broker.envelope import Message
from broker.errors import RemoteError, RpcTimeout
from broker.service import Context, HandlerError, onward
from nodes.env import NodeEnv
from nodes.privacy import masked
from store import identity
from store.auditlog import record_provision
from store.cards import (
    USABLE_STATES,
    CardEvent,
    CardState,
    CardTransitionError,
    DestinationConflict,
    forget_relayed_destination_notices,
    mark_destination_sent,
    store_destination,
    transition,
)
from store.records import (
    DESTINATION_FIELDS,
    IdentityRecord,
    RecordStatus,
    destination_from_dict,
    destination_lengths,
    record_to_dict,
)

log = logging.getLogger(__name__)

FORWARD_TYPE = "cardmgmt.cs.destination"
LEGAL_BASIS_CS7 = "個人番号通知書及び個人番号カード省令35条"
CARDMGMT_TIMEOUT = 5.0

# 送付先 item → the file (2) item it must equal (CS-7: 「４情報…が最新であるか」 + 個人番号)
FRESHNESS_ITEMS = (
    ("name_kanji", "name_kanji"),
    ("name_kana", "name_kana"),
    ("address", "address"),
    ("birth_date", "birth_date"),
    ("sex", "sex"),
    ("individual_number", "individual_number"),
)

CARD_FIELDS = ("individual_number", "name", "address", "birth_date", "sex")


def _record_value(record: IdentityRecord, card_field: str) -> str:
    """The file (2) value in the card's notation (YYYYMMDD dates, sex code)."""
    if card_field == "name":
        return record.name_kanji
    if card_field == "birth_date":
        return record.birth_date.strftime("%Y%m%d")
    if card_field == "sex":
        return record.sex.value
    value = getattr(record, card_field)
    return "" if value is None else str(value)


def _same(card_field: str, a: str, b: str) -> bool:
    if card_field == "name":  # the chip may carry an ASCII space where file (2) has U+3000
        return a.replace(" ", "\u3000").strip() == b.replace(" ", "\u3000").strip()
    return a == b


def compare_card(
    record: IdentityRecord, history: Iterable[IdentityRecord], card: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    """Field-by-field result of a card against file (2) and the person's history.

    Returns (verdict, fields): ``match`` when every item agrees; ``stale_card`` when each item
    that differs shows a value this person held before (the card predates a 転居 or a name
    change); ``mismatch`` otherwise.
    """
    older = list(history)
    results = []
    for f in CARD_FIELDS:
        seen = str(card[f])
        ok = _same(f, seen, _record_value(record, f))
        previous = not ok and any(_same(f, seen, _record_value(old, f)) for old in older)
        results.append({"field": f, "result": "match" if ok else "mismatch", "previous": previous})
    differing = [r for r in results if r["result"] == "mismatch"]
    if not differing:
        return "match", results
    if all(r["previous"] for r in differing):
        return "stale_card", results
    return "mismatch", results


def check_destination(record: dict[str, Any], municipality: str) -> None:
    """CS-7 checks before a 送付先 record is kept and forwarded; raises HandlerError."""
    missing = [name for name in DESTINATION_FIELDS if name not in record]
    if missing:
        raise HandlerError(
            "V-1",
            f"送付先 record lacks {len(missing)} of the 67 items (first: {missing[0]})",
            "送付先情報の項目が不足しています",
        )
    try:
        destination_from_dict(record)
    except (TypeError, ValueError) as exc:
        raise HandlerError(
            "V-1", f"送付先 record is malformed: {type(exc).__name__}", "送付先情報の形式誤り"
        ) from None
    wrong = [k for k, v in destination_lengths(record).items() if record.get(k) != v]
    if wrong:
        raise HandlerError(
            "V-1",
            f"項目長 disagree with their items: {', '.join(sorted(wrong))}",
            "送付先情報の項目長が一致しません",
        )
    if record["municipality_code"] != municipality:
        raise HandlerError(
            "V-6",
            f"送付先 record of municipality {record['municipality_code']}, not {municipality}",
            "他市町村の送付先情報です",
        )
    current = identity.get_by_resident_code(record["resident_code"])
    if current is None or current.record_status is not RecordStatus.CURRENT:
        raise HandlerError(
            "CS-7",
            "no current resident with this 住民票コード (removed persons are not notified)",
            "送付先情報の対象者が住民ではありません",
        )
    on_file = record_to_dict(current)
    stale = [dest for dest, mine in FRESHNESS_ITEMS if record.get(dest) != on_file.get(mine)]
    if stale:
        raise HandlerError(
            "CS-7",
            f"送付先 record is not current: {', '.join(stale)} differ from the 本人確認情報",
            "送付先情報が最新の本人確認情報と一致しません",
        )


def card_handlers(env: NodeEnv, operator: Callable[..., Any]) -> dict[str, Any]:
    """Handlers the CS adds for cards; `operator(type, fn)` wraps an operator request so that
    it is usage-logged (fn returns (reply data, usage-log target))."""

    # ---------------------------------------------------------------- CS-7

    def on_destination(msg: Message, ctx: Context) -> None:
        record = msg.body["record"]
        check_destination(record, env.municipality)
        try:
            outcome = store_destination(record, now=env.now())
        except DestinationConflict as exc:
            raise HandlerError("V-9", str(exc), "送付先管理番号が重複しています") from None
        if outcome == "duplicate":
            return  # the first copy is already on its way to 機構
        ctx.send(env.cardmgmt, FORWARD_TYPE, {"record": record})
        record_provision(
            at=env.now(),
            operator_id=msg.header.sender,
            terminal_id=msg.header.sender,
            recipient=env.cardmgmt,
            message_type=FORWARD_TYPE,
            legal_basis=LEGAL_BASIS_CS7,
            target=record["resident_code"],
            result="provided",
            msg_id=msg.header.msg_id,
        )

    def on_destination_ack(msg: Message, ctx: Context) -> None:
        number = msg.body["destination_id"]
        if not mark_destination_sent(number, at=env.now()):
            log.info("%s: acknowledgement for an unknown or already sent 送付先", env.node_id)
        forget_relayed_destination_notices(FORWARD_TYPE)

    # ---------------------------------------------------------------- CS-8

    def _card_state(ctx: Context, serial: str) -> dict[str, Any] | None:
        """機構's view of a card; None when 機構 does not answer in time."""
        try:
            return ctx.call(
                env.cardmgmt, "cardmgmt.cs.card_state", {"serial": serial}, CARDMGMT_TIMEOUT
            )
        except RpcTimeout:
            return None

    def op_card_event(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        event, serial, code = CardEvent(body["event"]), body["serial"], body["resident_code"]
        target = f"{event.value} card {serial} {code}"
        if identity.get_by_resident_code(code) is None:
            exc = HandlerError("not_found", "no person with this 住民票コード", "対象者なし")
            exc.target = target  # type: ignore[attr-defined]
            raise exc
        try:
            state = _card_state(ctx, serial)
        except RemoteError as exc:
            raise HandlerError(exc.code, exc.message, exc.title) from None
        before = after = None
        if state is not None:
            if state["resident_code"] != code:
                raise HandlerError(
                    "card_mismatch",
                    "the card belongs to another 住民票コード",
                    "カードと対象者が一致しません",
                )
            before = CardState(state["state"])
            try:
                after = transition(before, event)
            except CardTransitionError as exc:
                err = HandlerError(exc.rule, str(exc), exc.title)
                err.target = target  # type: ignore[attr-defined]
                raise err from None
        ctx.send(
            env.cardmgmt,
            "cardmgmt.cs.card_event",
            {
                "event": event.value,
                "serial": serial,
                "resident_code": code,
                "operator_id": body["operator_id"],
                "terminal_id": msg.header.sender,
                "on": env.today().isoformat(),
            },
        )
        return (
            {
                "accepted": True,
                "checked": state is not None,
                "state_before": before.value if before else None,
                "state_after": after.value if after else None,
            },
            target,
        )

    def op_card_issue(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        code = body["resident_code"]
        target = f"交付 {code}"
        record = identity.get_by_resident_code(code)
        if record is None or record.record_status is not RecordStatus.CURRENT:
            raise HandlerError(
                "not_found", "no current resident with this 住民票コード", "対象者なし"
            )
        if not record.individual_number:
            raise HandlerError(
                "no_number", "the resident has no 個人番号 yet", "個人番号が未指定です"
            )
        presented = {k: v for k, v in body["presented"].items() if v not in (None, "")}
        if "name_kanji" not in presented or not ({"birth_date", "address"} & presented.keys()):
            raise HandlerError(
                "CS-2",
                "identity check needs 氏名 and 生年月日 or 住所 from the documents shown",
                "本人確認書類の氏名と、生年月日または住所を入力してください",
            )
        on_file = record_to_dict(record)
        differ = sorted(k for k, v in presented.items() if on_file.get(k) != v)
        if differ:
            exc = HandlerError(
                "CS-2",
                f"documents shown differ from the 本人確認情報: {', '.join(differ)}",
                "本人確認書類の記載が本人確認情報と一致しません",
            )
            exc.target = target  # type: ignore[attr-defined]
            raise exc
        request = {
            "resident_code": code,
            "serial": body.get("serial"),
            "pins": body["pins"],
            "operator_id": body["operator_id"],
            "terminal_id": msg.header.sender,
            "individual_number": record.individual_number,
            "name_kanji": record.name_kanji,
            "address": record.address,
            "birth_date": record.birth_date.isoformat(),
            "sex": record.sex.value,
        }
        try:
            answer = ctx.call(env.cardmgmt, "cardmgmt.cs.issue", request, CARDMGMT_TIMEOUT)
        except RpcTimeout as exc:
            raise HandlerError(
                "upstream_timeout", str(exc), "個人番号カード管理システムが応答しません"
            ) from None
        except RemoteError as exc:
            err = HandlerError(exc.code, exc.message, exc.title)
            err.target = target  # type: ignore[attr-defined]
            raise err from None
        return answer, f"交付 card {answer['serial']} {code}"

    # ---------------------------------------------------------------- T-03 card check

    def op_card_check(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        code = body["resident_code"]
        target = f"カード照合 {code}"
        record = identity.get_by_resident_code(code)
        if record is None:
            return {
                "verdict": "not_found",
                "fields": [],
                "record": None,
                "record_status": None,
                "card_state": None,
                "card_usable": None,
            }, target
        older = [r for _, r in identity.history(code)]
        verdict, fields = compare_card(record, older, body["card"])
        card_state = None
        if body.get("serial"):
            try:
                state = _card_state(ctx, body["serial"])
            except RemoteError:
                state = None  # unknown to 機構: shown as "state unknown", not a refusal
            if state is not None and state["resident_code"] == code:
                card_state = state["state"]
        reply = {
            "verdict": verdict,
            "fields": fields,
            "record": masked(record),  # 個人番号 shown in clear only through the logged reveal
            "record_status": record.record_status.value,
            "card_state": card_state,
            "card_usable": None if card_state is None else CardState(card_state) in USABLE_STATES,
        }
        return reply, f"{target} → {verdict}"

    return {
        "cs.registry.destination": on_destination,
        "cs.cardmgmt.destination_ack": on_destination_ack,
        "cs.op.card.event": onward(operator("cs.op.card.event", op_card_event)),
        "cs.op.card.issue": onward(operator("cs.op.card.issue", op_card_issue)),
        "cs.op.card.check": onward(operator("cs.op.card.check", op_card_check)),
    }
