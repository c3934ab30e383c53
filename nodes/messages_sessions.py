"""電文一覧（操作者）(operator message types): login, session, operator administration (T-17)
and audit review (T-18). Kept apart from nodes/messages.py so the session work has its own file.

Login bodies carry no session (there is none yet) and no 事務種別: the CS logs them under the task
``操作者認証``. Every other type carries the OPERATOR fields and is signed with the session key.
"""

from __future__ import annotations

from broker.schema import Bool, Bytes, Enum, Float, Int, List, MessageType, Obj, Optional, Spec, Str
from nodes.messages import OPERATOR, REQUEST, _t
from store.biometric import FEATURE_DIM

OPERATOR_ID = Str(32, r"[A-Za-z0-9._-]{1,32}")
TASK = Str(64)
PERMISSION = Str(64, r"cs\.op\.[a-z0-9_.*]{1,58}")
FEATURES = List(Float(), FEATURE_DIM)
ACCEPTED = {"accepted": Bool()}

LOGIN_REPLY: dict[str, Spec] = {
    "accepted": Bool(),
    # on refusal: a stable code, a title for the screen and what to do
    "code": Optional(Str(32)),
    "title": Optional(Str(200)),
    "message": Optional(Str(500)),
    "locked_until": Optional(Float()),
    # on success
    "session": Optional(Str(64)),
    "name": Optional(Str(100)),
    "tasks": Optional(List(TASK, 100)),
    "permissions": Optional(List(PERMISSION, 500)),
    "expires_at": Optional(Float()),
    "idle_lock_seconds": Optional(Float()),
}

OPERATOR_INFO = Obj(
    {
        "operator_id": OPERATOR_ID,
        "name": Str(100),
        "status": Enum("active", "revoked"),
        "tasks": List(TASK, 100),
        "card_serial": Str(32),
        "card_registered": Bool(),
        "enrolled": Bool(),
        "failures": Int(0),
        "locked_until": Optional(Float()),
    }
)
USAGE_ENTRY = Obj(
    {
        "seq": Int(0),
        "at": Float(),
        "user_id": Str(64),
        "terminal_id": Str(64),
        "task": Str(64),
        "reason": Str(2000),
        "message_type": Str(64),
        "target": Str(255),
        "outcome": Str(64),
        "session_id": Str(64),
        "signed": Bool(),
    }
)
PERIOD = {"since": Optional(Float()), "until": Optional(Float())}

SESSION_CATALOGUE: tuple[MessageType, ...] = (
    # ---- T-01 login: card challenge → card signature + biometric → session ------------------
    _t(
        "cs.op.login_challenge",
        REQUEST,
        {"operator_id": OPERATOR_ID},
        {"challenge_id": Str(32), "challenge": Bytes(32), "expires_at": Float()},
    ),
    _t(
        "cs.op.login",
        REQUEST,
        {
            "operator_id": OPERATOR_ID,
            "challenge_id": Str(32),
            "session_key": Bytes(32),
            "card_signature": Bytes(64),
            "features": FEATURES,
            # unlock: the locked session this re-authentication reopens
            "resume": Optional(Str(64)),
        },
        LOGIN_REPLY,
    ),
    _t("cs.op.lock", REQUEST, {**OPERATOR}, ACCEPTED),
    _t("cs.op.logout", REQUEST, {**OPERATOR}, ACCEPTED),
    _t(
        "cs.op.session_info",
        REQUEST,
        {**OPERATOR},
        {"state": Str(16), "tasks": List(TASK, 100), "permissions": List(PERMISSION, 500)},
    ),
    # ---- T-17 操作者管理 ---------------------------------------------------------------------
    _t(
        "cs.op.admin.task_table",
        REQUEST,
        {**OPERATOR},
        {"tasks": List(Obj({"task": TASK, "permissions": List(PERMISSION, 100)}), 200)},
    ),
    _t(
        "cs.op.admin.set_task",
        REQUEST,
        {**OPERATOR, "task_name": TASK, "permissions": List(PERMISSION, 100)},
        ACCEPTED,
    ),
    _t("cs.op.admin.operators", REQUEST, {**OPERATOR}, {"operators": List(OPERATOR_INFO, 10_000)}),
    _t(
        "cs.op.admin.register",
        REQUEST,
        {**OPERATOR, "target": OPERATOR_ID, "name": Str(100), "tasks": List(TASK, 100)},
        ACCEPTED,
    ),
    _t(
        "cs.op.admin.change",
        REQUEST,
        {
            **OPERATOR,
            "target": OPERATOR_ID,
            "name": Optional(Str(100)),
            "tasks": Optional(List(TASK, 100)),
        },
        ACCEPTED,
    ),
    _t(
        "cs.op.admin.enrol",
        REQUEST,
        {**OPERATOR, "target": OPERATOR_ID, "features": FEATURES},
        ACCEPTED,
    ),
    _t(
        "cs.op.admin.card",
        REQUEST,
        {**OPERATOR, "target": OPERATOR_ID, "card_serial": Str(32), "public_key": Bytes(32)},
        ACCEPTED,
    ),
    _t(
        "cs.op.admin.revoke",
        REQUEST,
        {**OPERATOR, "target": OPERATOR_ID},
        {"sessions_ended": Int(0)},
    ),
    _t("cs.op.admin.unlock", REQUEST, {**OPERATOR, "target": OPERATOR_ID}, ACCEPTED),
    # ---- T-18 監査 (log review) ---------------------------------------------------------------
    _t(
        "cs.op.audit.usage",
        REQUEST,
        {
            **OPERATOR,
            **PERIOD,
            "filter_operator": Optional(Str(64)),
            "filter_task": Optional(Str(64)),
            "filter_target": Optional(Str(255)),
            "outcome": Optional(Str(64)),
            "limit": Optional(Int(1, 10_000)),
        },
        {"entries": List(USAGE_ENTRY, 10_000), "truncated": Bool()},
    ),
    _t(
        "cs.op.audit.report",
        REQUEST,
        {
            **OPERATOR,
            **PERIOD,
            "report": Enum("night_holiday", "failed_logins", "mass_searches", "repeated_lookups"),
            "threshold": Optional(Int(1, 100_000)),
        },
        {"columns": List(Str(32), 12), "rows": List(List(Str(300), 12), 10_000)},
    ),
    _t(
        "cs.op.audit.provisions",
        REQUEST,
        {**OPERATOR, **PERIOD, "result": Optional(Enum("provided", "refused"))},
        {
            "entries": List(
                Obj(
                    {
                        "at": Float(),
                        "operator_id": Str(64),
                        "terminal_id": Str(64),
                        "recipient": Str(64),
                        "message_type": Str(64),
                        "legal_basis": Str(128),
                        "target": Str(255),
                        "result": Str(16),
                        "reason": Str(64),
                    }
                ),
                10_000,
            )
        },
    ),
    _t(
        "cs.op.audit.verify",
        REQUEST,
        {**OPERATOR},
        {
            "ok": Bool(),
            "rows_checked": Int(0),
            "first_bad_seq": Optional(Int()),
            "problem": Optional(Str(500)),
            "kind": Optional(Str(32)),
            "head_seq": Optional(Int()),
            "head_hash": Optional(Str(64)),
            "text": Str(500),
        },
    ),
)
