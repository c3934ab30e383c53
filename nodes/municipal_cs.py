"""市町村CS (municipal communication server): the 本人確認情報ファイル and every CS function.

CS-1 apply and validate the registry's updates (a refused update is answered with the rules it
broke and changes nothing), keep history, notify the prefecture (住基法30条の6) through the outbox;
CS-3 特例転入 (hold pushed 転出証明書情報 as pending, match it at 転入, send the 転入通知 back);
CS-4 4情報 search (V-7); CS-5 national queries routed through the prefecture; number generation
with the V-10/V-11 checks on 機構's answer; 住民票コード変更 from candidates offered by 機構.
Every operator request is written to the hash-chained usage log with operator, terminal, 事務種別
and 処理事由 — refused ones too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from broker.envelope import Message
from broker.errors import RemoteError, RpcTimeout
from broker.service import Context, HandlerError, onward
from nodes.cs_sessions import authorize, session_handlers
from nodes.env import NodeEnv, RolePart
from nodes.privacy import mask_number, masked
from store import cs_extras, identity, transfers
from store.auditlog import append_usage, record_provision_at_commit
from store.records import (
    ChangeReason,
    RecordStatus,
    Sex,
    lookup_code,
    provided_from,
    provided_to_dict,
)
from store.validation import (
    RuleViolation,
    apply_update,
    validate_number_answer,
    validate_search,
    validate_update,
)

log = logging.getLogger(__name__)

MOVE_IN_REASONS = frozenset({ChangeReason.MOVE_IN, ChangeReason.MOVE_IN_FROM_ABROAD})
OpHandler = Callable[[Message, Context], dict[str, Any]]


def _violation_dicts(violations: list[Any]) -> list[dict[str, Any]]:
    return [{"rule": v.rule, "field": v.field, "message": v.message[:500]} for v in violations]


def _refused(code: str, message: str, title: str) -> HandlerError:
    return HandlerError(code, message, title, commit=True)  # keep the refusal's usage-log row


def build(env: NodeEnv) -> RolePart:
    registry = env.registry_of(env.municipality)
    pref = env.prefecture_node()

    # ---------------------------------------------------------------- CS-1 updates

    def on_identity_update(msg: Message, ctx: Context) -> None:
        raw = msg.body["update"]
        code = lookup_code(raw)
        current = identity.get_by_resident_code(code) if code else None
        update, violations = validate_update(raw, current)
        if update is not None:
            muni = update.changes.get("municipality_code")
            if muni is not None and muni != env.municipality:
                violations = [
                    RuleViolation(
                        "V-1",
                        "municipality_code",
                        f"not this CS's municipality ({env.municipality})",
                    )
                ]
                update = None
        if update is None:
            ctx.send(
                registry,
                "registry.cs.update_result",
                {
                    "request_number": str(raw.get("request_number", ""))[:64],
                    "resident_code": code
                    if isinstance(code, str) and len(code) == 11 and code.isdigit()
                    else "00000000000",
                    "ok": False,
                    "violations": _violation_dicts(violations),
                },
            )
            log.info(
                "%s: update refused: %s",
                env.node_id,
                ", ".join(sorted({v.rule for v in violations})),
            )
            return
        record = apply_update(
            current,
            update,
            now=env.now(),
            operator_id=msg.header.sender,
            terminal_id=msg.header.sender,
        )
        identity.save_record(record, recorded_at=env.now(), previous=current)
        provided = provided_from(record)
        ctx.send(pref, "pref.cs.identity_update", {"provided": provided_to_dict(provided)})
        record_provision_at_commit(
            at=env.now(),
            operator_id=msg.header.sender,
            terminal_id=msg.header.sender,
            recipient=pref,
            message_type="pref.cs.identity_update",
            legal_basis="住基法30条の6",
            target=record.resident_code,
            result="provided",
            msg_id=msg.header.msg_id,
        )
        if record.change_reason in MOVE_IN_REASONS:
            pending = transfers.pending_for(record.resident_code)
            if pending is not None:
                transfers.mark_matched(pending.id)
                _send_movein_notice(
                    ctx, record.resident_code, pending.from_municipality, record.change_date
                )

    def _send_movein_notice(ctx: Context, code: str, former: str, moved_in_on: date) -> None:
        body = {
            "resident_code": code,
            "to_municipality": env.municipality,
            "moved_in_on": moved_in_on.isoformat(),
        }
        ctx.send(env.cs_of(former), "cs.transfer.movein_notice", body)

    # ---------------------------------------------------------------- numbers (番号法8条)

    def on_number_request(msg: Message, ctx: Context) -> None:
        code, reqno = msg.body["resident_code"], msg.body["request_number"]
        record = identity.get_by_resident_code(code)
        if record is None or record.record_status is not RecordStatus.CURRENT:
            ctx.send(
                registry,
                "registry.cs.number_result",
                {
                    "request_number": reqno,
                    "resident_code": code,
                    "ok": False,
                    "violations": [
                        {
                            "rule": "V-10",
                            "field": "record_status",
                            "message": "no current resident with this 住民票コード",
                        }
                    ],
                },
            )
            return
        ctx.send(
            env.national,
            "national.cs.number_request",
            {"resident_code": code, "request_number": reqno, "municipality": env.municipality},
        )

    def on_number_answer(msg: Message, ctx: Context) -> None:
        body = msg.body
        code = body["resident_code"]
        record = identity.get_by_resident_code(code)
        result: dict[str, Any] = {"request_number": body["request_number"], "resident_code": code}
        if body.get("error") or not body.get("individual_number"):
            rule = (body.get("error") or "V-11")[:4].rstrip(":")
            message = body.get("error") or "機構 answered no number"
            result.update(
                ok=False,
                violations=[{"rule": rule, "field": "individual_number", "message": message[:500]}],
            )
        elif record is None:
            result.update(
                ok=False,
                violations=[
                    {"rule": "V-10", "field": None, "message": "the person is no longer on file"}
                ],
            )
        else:
            answer = {k: body.get(k) for k in ("name_kanji", "birth_date", "sex", "address")}
            answer["resident_code"] = code
            violations = validate_number_answer(record, answer, body["individual_number"])
            if violations:
                result.update(ok=False, violations=_violation_dicts(violations))
            else:
                result.update(ok=True, individual_number=body["individual_number"], violations=[])
        ctx.send(registry, "registry.cs.number_result", result)

    # ---------------------------------------------------------------- CS-3 特例転入

    def on_moveout_certificate(msg: Message, ctx: Context) -> None:
        body = msg.body
        target = body["to_municipality"]
        if target not in env.config.municipalities or target == env.municipality:
            raise HandlerError("destination", f"no CS for municipality {target} in this network")
        cs = env.cs_of(target)
        ctx.send(
            cs,
            "cs.transfer.moveout_certificate",
            {
                "resident_code": body["resident_code"],
                "from_municipality": env.municipality,
                "planned_on": body["planned_on"],
                "record": body["record"],
            },
        )
        record_provision_at_commit(
            at=env.now(),
            operator_id=msg.header.sender,
            terminal_id=msg.header.sender,
            recipient=cs,
            message_type="cs.transfer.moveout_certificate",
            legal_basis="住基法24条の2",
            target=body["resident_code"],
            result="provided",
            msg_id=msg.header.msg_id,
        )

    def on_transfer_certificate(msg: Message, ctx: Context) -> None:
        body = msg.body
        sender = env.config.nodes.get(msg.header.sender)
        if sender is None or sender.municipality != body["from_municipality"]:
            raise HandlerError("route", "a CS may only send its own municipality's certificates")
        transfers.hold(
            body["resident_code"],
            body["from_municipality"],
            {"planned_on": body["planned_on"], "record": body["record"]},
            now=env.now(),
        )

    def on_registry_movein_notice(msg: Message, ctx: Context) -> None:
        body = msg.body
        former = body["from_municipality"]
        if former not in env.config.municipalities or former == env.municipality:
            raise HandlerError("destination", f"no CS for municipality {former} in this network")
        _send_movein_notice(
            ctx, body["resident_code"], former, date.fromisoformat(body["moved_in_on"])
        )

    def on_transfer_movein_notice(msg: Message, ctx: Context) -> None:
        ctx.send(registry, "registry.cs.movein_notice", dict(msg.body))

    # ---------------------------------------------------------------- operator requests

    def operator(
        task_type: str, fn: Callable[[Message, Context], tuple[dict[str, Any], str]]
    ) -> OpHandler:
        """Wrap an operator request: every outcome, refusals included, goes to the usage log."""

        def handle(msg: Message, ctx: Context) -> dict[str, Any]:
            body = msg.body
            common = {
                "at": env.now(),
                "user_id": body["operator_id"],
                "terminal_id": msg.header.sender,
                "task": body["task"],
                "reason": body["reason"],
                "message_type": task_type,
                "session_id": body.get("session") or "",
            }
            caller = authorize(env, msg, task_type)
            common["user_id"] = caller["operator_id"]
            common["session_id"] = caller["session_id"]
            common["evidence"] = caller["evidence"]
            if not body["task"].strip() or not body["reason"].strip():
                append_usage(**common, target="", outcome="refused:task_reason")
                raise _refused(
                    "task_reason",
                    "事務種別 and 処理事由 are required",
                    "事務種別・処理事由を入力してください",
                )
            try:
                data, target = fn(msg, ctx)
            except HandlerError as exc:
                append_usage(
                    **common, target=getattr(exc, "target", ""), outcome=f"refused:{exc.code}"[:58]
                )
                exc.commit = True  # keep the refusal's usage-log row
                raise
            append_usage(**common, target=target, outcome="ok")
            return data

        return handle

    def op_search(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        criteria = {k: v for k, v in msg.body["criteria"].items() if v not in (None, "")}
        described = " ".join(f"{k}={v}" for k, v in sorted(criteria.items()))[:200]
        violations = validate_search(criteria)
        if violations:
            v = violations[0]
            exc = HandlerError(
                v.rule,
                v.message,
                "検索条件が不足しています（氏名と、住所または生年月日が必要です）",
            )
            exc.target = described  # type: ignore[attr-defined]
            raise exc
        limit = msg.body.get("limit") or 100
        from store.search import search_4info

        found = search_4info(
            name=criteria.get("name_kanji"),
            name_kana=criteria.get("name_kana"),
            address=criteria.get("address"),
            birth_date=date.fromisoformat(criteria["birth_date"])
            if criteria.get("birth_date")
            else None,
            sex=Sex(criteria["sex"]) if criteria.get("sex") else None,
            limit=limit + 1,
        )
        return (
            {
                "records": [masked(r) for r in found[:limit]],
                "truncated": len(found) > limit,
            },
            f"4情報検索 {described} → {min(len(found), limit)}件",
        )

    def op_lookup(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        code = msg.body["resident_code"]
        record = identity.get_by_resident_code(code)
        history = [{"no": n, "record": masked(r)} for n, r in identity.history(code)]
        return {"record": masked(record) if record else None, "history": history}, code

    def op_reveal_number(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        """個人番号 shown in clear only on request; the request is the usage-log row."""
        code = msg.body["resident_code"]
        record = identity.get_by_resident_code(code)
        if record is None:
            raise HandlerError("not_found", "no such 住民票コード", "対象者が見つかりません")
        return {"individual_number": record.individual_number}, f"個人番号表示 {code}"

    def op_output(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        """T-16 媒体への出力: recorded before the terminal writes or prints anything."""
        b = msg.body
        return {"recorded": True}, f"出力 {b['medium']} {b['kind']} {b['target']}"[:200]

    def op_national_query(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        key = msg.body["key"]
        target = key.get("resident_code") or key["by"]
        try:
            answer = ctx.call(pref, "pref.cs.query", {"key": key, "requester": env.municipality})
        except RpcTimeout as exc:
            raise HandlerError(
                "upstream_timeout", str(exc), "都道府県サーバが応答しません"
            ) from None
        except RemoteError as exc:
            raise HandlerError(exc.code, exc.message, exc.title) from None
        for r in answer["records"]:  # the terminal sees 個人番号 masked, whatever tier answered
            r["individual_number"] = mask_number(r.get("individual_number"))
        return answer, f"全国照会 {target} → {len(answer['records'])}件"

    def op_code_candidates(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        code = msg.body["resident_code"]
        record = identity.get_by_resident_code(code)
        if record is None or record.record_status is not RecordStatus.CURRENT:
            raise HandlerError(
                "not_found", "no current resident with this 住民票コード", "対象者が見つかりません"
            )
        try:
            answer = ctx.call(
                env.national,
                "national.cs.code_candidates",
                {"municipality": env.municipality, "count": 5},
            )
        except RpcTimeout as exc:
            raise HandlerError("upstream_timeout", str(exc), "全国サーバが応答しません") from None
        cs_extras.remember_offers(code, answer["codes"], now=env.now())
        return {"codes": answer["codes"]}, code

    def op_code_change(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        code, new = msg.body["resident_code"], msg.body["new_resident_code"]
        if not cs_extras.take_offer(code, new):
            raise HandlerError(
                "not_offered",
                "the new code was not offered by 機構 for this resident",
                "指定されたコードは使用できません",
            )
        ctx.send(
            registry,
            "registry.cs.code_change",
            {
                "old_resident_code": code,
                "new_resident_code": new,
                "operator_id": msg.body["operator_id"],
            },
        )
        return {"accepted": True}, code

    def op_pending(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        out = []
        for p in transfers.list_pending():
            rec = p.content.get("record", {})
            out.append(
                {
                    "resident_code": p.resident_code,
                    "from_municipality": p.from_municipality,
                    "planned_on": p.content.get("planned_on", ""),
                    "received_at": p.received_at.timestamp(),
                    "name_kanji": str(rec.get("name_kanji", ""))[:200],
                }
            )
        return {"pending": out}, f"転出証明書情報一覧 {len(out)}件"

    def op_tokurei_movein(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        pending = transfers.pending_for(body["resident_code"])
        if pending is None:
            raise HandlerError(
                "no_certificate",
                "no pending 転出証明書情報 for this resident",
                "転出証明書情報がありません",
            )
        ctx.send(
            registry,
            "registry.cs.tokurei_movein",
            {
                "resident_code": body["resident_code"],
                "from_municipality": pending.from_municipality,
                "record": pending.content["record"],
                "new_address": body["new_address"],
                "moved_in_on": body["moved_in_on"],
                "operator_id": body["operator_id"],
            },
        )
        return {"accepted": True}, body["resident_code"]

    def op_statistics(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        since = msg.body.get("since")
        rows = cs_extras.update_counts(date.fromisoformat(since) if since else None)
        return {
            "by_day_and_reason": [
                {"day": d.isoformat(), "reason": r, "count": n} for d, r, n in rows
            ]
        }, "統計"

    handlers: dict[str, Any] = {
        "cs.registry.identity_update": on_identity_update,
        "cs.registry.number_request": on_number_request,
        "cs.national.number_answer": on_number_answer,
        "cs.registry.moveout_certificate": on_moveout_certificate,
        "cs.transfer.moveout_certificate": on_transfer_certificate,
        "cs.registry.movein_notice": on_registry_movein_notice,
        "cs.transfer.movein_notice": on_transfer_movein_notice,
        "cs.op.search": operator("cs.op.search", op_search),
        "cs.op.lookup": operator("cs.op.lookup", op_lookup),
        "cs.op.number.reveal": operator("cs.op.number.reveal", op_reveal_number),
        "cs.op.output": operator("cs.op.output", op_output),
        "cs.op.national_query": onward(operator("cs.op.national_query", op_national_query)),
        "cs.op.code_candidates": onward(operator("cs.op.code_candidates", op_code_candidates)),
        "cs.op.code_change": operator("cs.op.code_change", op_code_change),
        "cs.op.pending_moveouts": operator("cs.op.pending_moveouts", op_pending),
        "cs.op.tokurei_movein": operator("cs.op.tokurei_movein", op_tokurei_movein),
        "cs.op.statistics": operator("cs.op.statistics", op_statistics),
    }
    from nodes.cs_cards import card_handlers
    from nodes.cs_tasks import task_handlers

    handlers.update(card_handlers(env, operator))
    handlers.update(task_handlers(env, operator))
    handlers.update(session_handlers(env, operator))
    return RolePart(handlers=handlers)
