"""都道府県サーバ (prefecture server): the 都道府県知事保存本人確認情報ファイル.

Applies the CS's update notices in per-resident order (住基法30条の6) and forwards what it
applied to 全国サーバ (30条の11); answers queries for residents of its municipalities and relays
the rest to national (30条の10 / 30条の12); serves consistency digests (住基法14条).
"""

from __future__ import annotations

from typing import Any

from broker.envelope import Message
from broker.errors import RemoteError, RpcTimeout
from broker.service import Context, HandlerError, onward
from nodes import tiers
from nodes.env import NodeEnv, RolePart
from store.auditlog import record_provision_at_commit
from store.records import RecordStatus, provided_to_dict

TIER = "prefecture"


def build(env: NodeEnv) -> RolePart:
    national = env.national  # looked up once: the config does not change while the node runs
    sessions = tiers.DigestSessions(TIER, env.clock)

    def on_update(msg: Message, ctx: Context) -> None:
        muni = msg.body["provided"].get("municipality_code", "")
        tiers.check_owner(env, ctx, muni)
        known = env.config.municipalities.get(muni)
        if known is None or known.prefecture != env.prefecture:
            raise HandlerError(
                "route", f"municipality {muni} is not in prefecture {env.prefecture}"
            )
        result = tiers.apply_provided(TIER, msg.body, env)
        if result is None:
            return
        applied, _current = result  # a stale version travels on too: national keeps it as history
        repair = bool(msg.body.get("repair"))
        # the provided record as it came: apply_provided parsed and checked it, and what the
        # prefecture keeps is exactly that record (no second conversion back to a dict)
        ctx.send(
            national,
            "national.pref.identity_update",
            tiers.forward_body(msg.body["provided"], repair),
        )
        record_provision_at_commit(
            at=env.now(),
            operator_id=env.node_id,
            terminal_id=env.node_id,
            recipient=national,
            message_type="national.pref.identity_update",
            legal_basis="住基法30条の11",
            target=applied.resident_code,
            result="provided",
            msg_id=msg.header.msg_id,
        )

    def on_query(msg: Message, ctx: Context) -> dict[str, Any]:
        records, truncated = tiers.find(TIER, msg.body["key"])
        current = [r for r in records if r.record_status is RecordStatus.CURRENT]
        if current:
            tiers.record_query_provision(env, msg, current, "住基法30条の10")
            return {"records": [provided_to_dict(r) for r in current], "truncated": truncated}
        try:
            answer = ctx.call(national, "national.pref.query", msg.body)
        except RpcTimeout as exc:
            raise HandlerError("upstream_timeout", str(exc), "全国サーバが応答しません") from None
        except RemoteError as exc:
            raise HandlerError(exc.code, exc.message, exc.title) from None
        return answer

    def on_digest(msg: Message, ctx: Context) -> dict[str, Any]:
        tiers.check_owner(env, ctx, msg.body["municipality"])
        return sessions.answer(msg.body)

    def on_records(msg: Message, ctx: Context) -> dict[str, Any]:
        tiers.check_owner(env, ctx, msg.body["municipality"])
        return tiers.records_for(TIER, msg.body)

    return RolePart(
        handlers={
            "pref.cs.identity_update": on_update,
            "pref.cs.query": onward(on_query),
            "pref.cs.digest": on_digest,
            "pref.cs.records": on_records,
        }
    )
