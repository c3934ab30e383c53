"""電文一覧（窓口事務）(counter-task message types): 職権修正 with a second operator's approval
(V-12), 送付先情報通知 counts (T-07, §4.10) and 整合性確認 from the terminal (T-08, CS-6).

=================================  ======  ==================================================
type                               kind    what
=================================  ======  ==================================================
cs.op.correction.propose           request terminal → CS: a 職権修正 waits for a second operator
cs.op.correction.list              request terminal → CS: proposals (pending first)
cs.op.correction.approve           request terminal → CS: another operator approves; the CS
                                           sends ``registry.cs.correction``
cs.op.correction.reject            request terminal → CS: another operator rejects
registry.cs.correction             notice  CS → registry: apply the approved correction; the
                                           registry answers with an ordinary CS-1 職権修正
cs.op.destinations                 request terminal → CS: 送付先 counts per day, never content
cs.op.consistency.start            request terminal → CS: start a 整合性確認 (one at a time)
cs.op.consistency.status           request terminal → CS: progress and the last report
=================================  ======  ==================================================

The registry stays the only writer of file (2) (V-6): an approved correction goes to the
registry, which changes its 住民基本台帳 and sends the update through CS-1 like any other 異動.
"""

from __future__ import annotations

from broker.schema import Bool, Enum, Float, Int, List, MessageType, Obj, Optional, Spec, Str
from nodes.messages import CODE, DATE, NOTICE, OPERATOR, REQUEST, Fields
from store.records import IDENTITY_FIELDS

PROPOSAL_ID = Str(32, r"C[0-9A-Z]{1,31}")
RUN_ID = Str(32, r"K[0-9A-Z]{1,31}")
ITEMS = Fields(IDENTITY_FIELDS, max_items=40)
STATUS = Enum("pending", "approved", "rejected")

PROPOSAL = Obj(
    {
        "proposal_id": PROPOSAL_ID,
        "resident_code": CODE,
        "changes": ITEMS,
        "before": ITEMS,
        "note": Str(500),
        "status": STATUS,
        "proposer_id": Str(64),
        "proposer_terminal": Str(64),
        "proposed_at": Float(),
        "decided_by": Optional(Str(64)),
        "decided_terminal": Optional(Str(64)),
        "decided_at": Optional(Float()),
        "decision_note": Optional(Str(500)),
        # the CS's current record already holds every corrected value (the 職権修正 came back)
        "applied": Bool(),
    }
)
DECISION = {**OPERATOR, "proposal_id": PROPOSAL_ID, "note": Optional(Str(500))}

DAY_COUNTS = Obj(
    {
        "day": DATE,
        "received": Int(0),  # 送付先 notices the CS took in (kept or refused)
        "refused": Int(0),  # refused by the CS-7 checks
        "forwarded": Int(0),  # sent on to 機構 unedited (provision log)
        "acknowledged": Int(0),  # 機構's acknowledgements (sent_at set)
        "purged": Int(0),  # deleted by the retention job
    }
)

MISMATCH = Obj(
    {
        "resident_code": CODE,
        "tier": Str(16),
        "node": Str(64),
        "kind": Enum("missing", "extra", "differs"),
        "fields": List(Str(64), 100),
    }
)
PEER = Obj(
    {
        "node": Str(64),
        "tier": Str(16),
        "records": Int(0),
        "mismatches": Int(0),
        "round_trips": Int(0),
        "wire_bytes": Int(0),
    }
)
SUMMARY = Obj(
    {
        "ok": Bool(),
        "cs_records": Int(0),
        "round_trips": Int(0),
        "wire_bytes": Int(0),
        "full_dump_bytes": Int(0),
        "peers": List(PEER, 10),
        "mismatch_count": Int(0),
        "mismatches": List(MISMATCH, 1000),  # the first 1000; mismatch_count says how many
        "repairs": Int(0),
        "text": Str(20_000),
    }
)
RUN: dict[str, Spec] = {
    "run_id": RUN_ID,
    "state": Enum("running", "done", "failed"),
    "repair": Bool(),
    "operator_id": Str(64),
    "started_at": Float(),
    "finished_at": Optional(Float()),
    "done": Int(0),
    "total": Int(0),
    "description": Str(300),
    "error": Optional(Str(500)),
    "report": Optional(SUMMARY),
}


def _t(
    name: str, kinds: frozenset, body: dict[str, Spec], reply: dict[str, Spec] | None = None
) -> MessageType:
    return MessageType(name, kinds, Obj(body), Obj(reply) if reply is not None else None)


TASK_CATALOGUE: tuple[MessageType, ...] = (
    # ---- V-12 職権修正 with a second operator ---------------------------------------------------
    _t(
        "cs.op.correction.propose",
        REQUEST,
        {
            **OPERATOR,
            "resident_code": CODE,
            # not strict: an item a 職権修正 may not touch is answered with the rule, not a
            # bare schema refusal
            "changes": Fields(IDENTITY_FIELDS, strict=False, max_items=40),
            "note": Str(500),
        },
        {"proposal": PROPOSAL},
    ),
    _t(
        "cs.op.correction.list",
        REQUEST,
        {
            **OPERATOR,
            "status": Optional(STATUS),
            "resident_code": Optional(CODE),
            "limit": Optional(Int(1, 1000)),
        },
        {"proposals": List(PROPOSAL, 1000)},
    ),
    _t("cs.op.correction.approve", REQUEST, DECISION, {"proposal": PROPOSAL}),
    _t("cs.op.correction.reject", REQUEST, DECISION, {"proposal": PROPOSAL}),
    _t(
        "registry.cs.correction",
        NOTICE,
        {
            "proposal_id": PROPOSAL_ID,
            "resident_code": CODE,
            "changes": ITEMS,
            "note": Str(200),  # → 異動事由詳細
            "proposer_id": Str(64),
            "approver_id": Str(64),
        },
    ),
    # ---- T-07 送付先情報通知: counts only ------------------------------------------------------
    _t(
        "cs.op.destinations",
        REQUEST,
        {**OPERATOR, "since": Optional(DATE)},
        {
            "days": List(DAY_COUNTS, 400),
            "awaiting_ack": Int(0),  # on file, not yet acknowledged by 機構
            "awaiting_purge": Int(0),  # acknowledged, kept until the next business day
            "next_purge_due": Optional(Float()),
        },
    ),
    # ---- T-08 整合性確認 -----------------------------------------------------------------------
    _t(
        "cs.op.consistency.start",
        REQUEST,
        {**OPERATOR, "repair": Optional(Bool())},
        RUN,
    ),
    _t(
        "cs.op.consistency.status",
        REQUEST,
        {**OPERATOR},
        {"running": Bool(), "run": Optional(Obj(RUN))},
    ),
)

__all__ = ["TASK_CATALOGUE"]
