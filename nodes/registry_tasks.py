"""職権修正の反映 (applying an approved correction): the registry's half of V-12.

The CS never writes file (2) on an operator's word (V-6: the existing registry is its only
source). When a second operator has approved a correction at the CS, the CS sends
``registry.cs.correction``; the registry changes its 住民基本台帳 and sends the ordinary CS-1
update with 異動事由 職権修正, carrying only the corrected items, the next 更新順番号 and the
approved reason as 異動事由詳細. The CS validates and applies that update like any other and passes
it on to the prefecture and national.

Registered by nodes/existing_registry.py::

    "registry.cs.correction": lambda m, c: on_correction(reg, m, c, env),
"""

from __future__ import annotations

import logging
from typing import Any

from broker.envelope import Message
from broker.service import Context, HandlerError
from nodes.env import NodeEnv
from store import register
from store.records import ChangeReason

log = logging.getLogger(__name__)

UPDATE_TYPE = "cs.registry.identity_update"


def correction_update(
    person: dict[str, Any], changes: dict[str, Any], note: str, on_iso: str, seq: int, muni: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The register entry after the correction and the CS-1 update that announces it."""
    code = person["resident_code"]
    update = {
        "resident_code": code,
        "change_reason": ChangeReason.CORRECTION_BY_AUTHORITY.value,
        "change_date": on_iso,
        "request_number": f"R{muni}-{seq}",
        "sequence": seq,
        "notified_on": on_iso,
        **changes,
        "change_reason_detail": note[:200] or "職権修正",
    }
    return {**person, **changes}, update


def on_correction(reg: Any, msg: Message, ctx: Context, env: NodeEnv) -> None:
    """Apply the approved correction to the register and send the 職権修正 through CS-1.

    ``reg`` is the registry node's ``Registry`` (its CS is ``reg.cs``). A correction of a person
    who is no longer a current resident here is refused (dead-lettered with the reason); the
    CS's V-12 record still shows it as approved but never applied.
    """
    body = msg.body
    code = body["resident_code"]
    entry = register.get(code)
    if entry is None or entry.status != "current":
        raise HandlerError(
            "not_current",
            f"no current resident {code} in this register for correction {body['proposal_id']}",
        )
    seq = register.next_sequence()
    person, update = correction_update(
        dict(entry.record),
        dict(body["changes"]),
        body["note"],
        env.today().isoformat(),
        seq,
        env.municipality,
    )
    register.put(code, person, "current", entry.household)
    ctx.send(reg.cs, UPDATE_TYPE, {"update": update})
    log.info(
        "%s: 職権修正 %s applied (proposed by %s, approved by %s)",
        env.node_id,
        body["proposal_id"],
        body["proposer_id"],
        body["approver_id"],
    )


__all__ = ["correction_update", "on_correction"]
