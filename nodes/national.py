"""全国サーバ (national server, J-LIS): the 機構保存本人確認情報ファイル and number generation.

Applies the prefectures' notices in per-resident order (住基法30条の11); generates 個人番号
keyed by 住民票コード (番号法8条: unique, valid check digit, never reused) and answers them with
its own 4情報 so the CS can match them (V-11); offers candidate 住民票コード for a change;
answers queries by 住民票コード, 個人番号 or 4情報 (30条の12); serves consistency digests.
"""

from __future__ import annotations

from typing import Any

from broker.envelope import Message
from broker.service import Context, HandlerError
from nodes import tiers
from nodes.env import NodeEnv, RolePart
from store import identity
from store import national as numbers
from store.auditlog import record_provision_at_commit
from store.records import (
    CREATING_REASONS,
    ChangeReason,
    ProvidedIdentity,
    RecordStatus,
    provided_to_dict,
)

TIER = "national"


def _answer_body(request_number: str, person: ProvidedIdentity, number: str) -> dict[str, Any]:
    return {
        "resident_code": person.resident_code,
        "request_number": request_number,
        "individual_number": number,
        "name_kanji": person.name_kanji,
        "birth_date": person.birth_date.isoformat(),
        "sex": person.sex.value,
        "address": person.address,
    }


def build(env: NodeEnv) -> RolePart:
    sessions = tiers.DigestSessions(TIER, env.clock)

    def answer_number(
        ctx: Context, request_number: str, municipality: str, person: ProvidedIdentity
    ) -> None:
        cs = env.cs_of(municipality)
        if person.record_status is not RecordStatus.CURRENT:
            # V-10: never number a person already removed
            ctx.send(
                cs,
                "cs.national.number_answer",
                {
                    "resident_code": person.resident_code,
                    "request_number": request_number,
                    "error": "V-10: the person is removed (消除) on the national file",
                },
            )
            return
        number = person.individual_number or numbers.issue_individual_number(
            person.resident_code, rng=env.rng, now=env.now()
        )
        ctx.send(cs, "cs.national.number_answer", _answer_body(request_number, person, number))
        record_provision_at_commit(
            at=env.now(),
            operator_id=env.node_id,
            terminal_id=env.node_id,
            recipient=cs,
            message_type="cs.national.number_answer",
            legal_basis="番号法8条",
            target=person.resident_code,
            result="provided",
            msg_id=ctx.message.header.msg_id,
        )

    def on_update(msg: Message, ctx: Context) -> None:
        result = tiers.apply_provided(TIER, msg.body, env)
        if result is None:
            return
        applied, current = result
        if not current:
            return
        reason = applied.change_reason
        if reason is ChangeReason.RESIDENT_CODE_CHANGE and applied.old_resident_code:
            numbers.mark_code(applied.old_resident_code, "retired", now=env.now())
            numbers.mark_code(applied.resident_code, "assigned", now=env.now())
        elif reason in CREATING_REASONS:
            # a code comes into use, and a number request may have overtaken the person's record
            numbers.mark_code(applied.resident_code, "assigned", now=env.now())
            for request_number, municipality in numbers.take_deferred_requests(
                applied.resident_code
            ):
                answer_number(ctx, request_number, municipality, applied)

    def on_number_request(msg: Message, ctx: Context) -> None:
        body = msg.body
        tiers.check_owner(env, ctx, body["municipality"])
        person = identity.get_provided(TIER, body["resident_code"])
        if person is None:
            # the birth notice is still on its way through the prefecture
            numbers.defer_number_request(
                body["resident_code"], body["request_number"], body["municipality"]
            )
            return
        answer_number(ctx, body["request_number"], body["municipality"], person)

    def on_query(msg: Message, ctx: Context) -> dict[str, Any]:
        records, truncated = tiers.find(TIER, msg.body["key"])
        tiers.record_query_provision(env, msg, records, "住基法30条の12")
        return {"records": [provided_to_dict(r) for r in records], "truncated": truncated}

    def on_code_candidates(msg: Message, ctx: Context) -> dict[str, Any]:
        tiers.check_owner(env, ctx, msg.body["municipality"])
        codes = numbers.offer_resident_codes(
            msg.body["municipality"], msg.body["count"], rng=env.rng, now=env.now()
        )
        return {"codes": codes}

    def on_digest(msg: Message, ctx: Context) -> dict[str, Any]:
        tiers.check_owner(env, ctx, msg.body["municipality"])
        return sessions.answer(msg.body)

    def on_records(msg: Message, ctx: Context) -> dict[str, Any]:
        tiers.check_owner(env, ctx, msg.body["municipality"])
        return tiers.records_for(TIER, msg.body)

    return RolePart(
        handlers={
            "national.pref.identity_update": on_update,
            "national.pref.query": on_query,
            "national.cs.number_request": on_number_request,
            "national.cs.code_candidates": on_code_candidates,
            "national.cs.digest": on_digest,
            "national.cs.records": on_records,
        }
    )


__all__ = ["HandlerError", "build"]
