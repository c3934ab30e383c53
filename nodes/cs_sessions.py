"""操作者セッション (operator sessions at the CS): who may send which operator request.

Every `cs.op.*` request passes `authorize` before its handler runs, so a request crafted without
the terminal gets no more than the terminal would: the session must be open, unexpired, not idle
past the screen-saver limit, bound to the sending terminal (the envelope's authenticated sender)
and to the operator named in the body; the operator must still be active and hold a task whose
permissions cover the message type; and the body must carry the session key's signature over
`store.operators.command_message`. That signature goes into the usage-log row as evidence: the
session key was certified at login by the operator's card, so each logged command is provably
that operator's.

Login (T-01): ``cs.op.login_challenge`` hands out a one-time challenge; ``cs.op.login`` carries
the card's signature over challenge + session key (checked against the REGISTERED card key, never
the card's own claim) and a biometric sample matched against the enrolled cancelable template.
A refused login is answered as data (``accepted: False``) rather than an error reply, because an
error rolls the handler's transaction back and the failure count and its usage-log row must stay.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.crypto import Signer, verify
from broker.envelope import Message
from broker.service import Context, HandlerError
from juki.config import ApplianceConfig
from nodes.env import NodeEnv
from store import biometric, operators
from store.auditlog import append_usage, provision_entries, usage_entries, verify_usage_chain
from store.calendar import is_business_day
from store.operators import OperatorError, SessionState

log = logging.getLogger(__name__)

LOGIN_TASK = "操作者認証"
ADMIN_TASK = "操作者管理"
JST = timedelta(hours=9)
MASS_SEARCH_DEFAULT = 20
REPEATED_LOOKUP_DEFAULT = 3
NIGHT_START, NIGHT_END = 20, 8  # JST hours: 20:00–08:00 counts as night


def _refuse(code: str, message: str, title: str) -> HandlerError:
    exc = HandlerError(code, message, title)
    exc.commit = True  # type: ignore[attr-defined]  # keep the usage-log row of the refusal
    return exc


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


# --------------------------------------------------------------------------------------------
# authorize


def authorize(env: NodeEnv, msg: Message, task_type: str) -> dict[str, Any]:
    """Check the request's session and the operator's permission for `task_type`.

    Returns what the usage log needs about the caller (operator id, session id, evidence).
    Raises HandlerError with codes unauthenticated, session_locked, session_expired, revoked,
    bad_signature, forbidden; each refusal is also appended to the usage log.
    """
    body = msg.body
    now = env.now()
    terminal = msg.header.sender
    claimed = body.get("operator_id", "")
    session_id = body.get("session") or ""
    signature = body.get("signature") or b""

    def refuse(code: str, message: str, title: str) -> HandlerError:
        append_usage(
            at=now,
            user_id=claimed[:64],
            terminal_id=terminal,
            task=str(body.get("task", ""))[:64],
            reason=str(body.get("reason", "")),
            message_type=task_type,
            target="",
            outcome=f"refused:{code}",
            session_id=session_id[:64],
            evidence=bytes(signature),
        )
        return _refuse(code, message, title)

    session = operators.get_session(session_id) if session_id else None
    if session is None or session.terminal_id != terminal or session.operator_id != claimed:
        raise refuse(
            "unauthenticated",
            "no session for this operator on this terminal",
            "ログインしてください（操作者カードと生体認証が必要です）",
        )
    operator = operators.get_operator(session.operator_id)
    if (
        operator is None
        or operator.status is not operators.OperatorStatus.ACTIVE
        or session.state is SessionState.REVOKED
    ):
        raise refuse("revoked", "the operator's rights were revoked", "操作権限が失効しています")
    if session.state is SessionState.CLOSED:
        raise refuse("unauthenticated", "the session was logged out", "ログインしてください")
    if now >= session.expires_at:
        raise refuse("session_expired", "the session has expired", "もう一度ログインしてください")
    if not verify(session.session_key, operators.command_message(task_type, body), signature):
        raise refuse(
            "bad_signature",
            "the command is not signed by this session's key",
            "操作の署名を確認できません。もう一度ログインしてください",
        )
    free = task_type in operators.SESSION_FREE_TYPES
    idle = (now - session.last_seen).total_seconds() >= env.config.policy.idle_lock_seconds
    if not free and (session.state is SessionState.LOCKED or idle):
        raise refuse(
            "session_locked",
            "the session is locked (screen saver or card removal)",
            "画面がロックされています。操作者カードと生体認証で解除してください",
        )
    if not free and not operators.allows(operators.permissions_of(operator.operator_id), task_type):
        raise refuse(
            "forbidden",
            f"no granted task covers {task_type}",
            "この事務の操作権限がありません",
        )
    if session.state is SessionState.OPEN and not idle:
        operators.touch_session(session.session_id, now=now)
    return {
        "operator_id": operator.operator_id,
        "session_id": session.session_id,
        "evidence": bytes(signature),
    }


# --------------------------------------------------------------------------------------------
# handlers


def session_handlers(env: NodeEnv, operator: Any) -> dict[str, Any]:
    """Login, logout, unlock, operator administration and audit review requests."""
    policy = env.config.policy

    def login_usage(
        msg: Message, outcome: str, session_id: str = "", evidence: bytes = b""
    ) -> None:
        append_usage(
            at=env.now(),
            user_id=msg.body["operator_id"],
            terminal_id=msg.header.sender,
            task=LOGIN_TASK,
            reason="ロック解除" if msg.body.get("resume") else "ログイン",
            message_type=msg.header.type,
            target=msg.body["operator_id"],
            outcome=outcome,
            session_id=session_id,
            evidence=evidence,
        )

    def on_challenge(msg: Message, ctx: Context) -> dict[str, Any]:
        cid, challenge, expires = operators.new_challenge(
            msg.body["operator_id"], msg.header.sender, now=env.now()
        )
        return {"challenge_id": cid, "challenge": challenge, "expires_at": expires.timestamp()}

    def on_login(msg: Message, ctx: Context) -> dict[str, Any]:
        body = msg.body
        now = env.now()
        op_id = body["operator_id"]
        terminal = msg.header.sender
        signature = bytes(body["card_signature"])

        def refused(code: str, title: str, message: str, *, count: bool = True) -> dict[str, Any]:
            until = None
            if count:
                _failures, until = operators.record_failure(
                    op_id,
                    now=now,
                    limit=policy.login_failures_before_lockout,
                    lockout_seconds=policy.lockout_seconds,
                )
            login_usage(msg, f"refused:{code}", evidence=signature)
            log.info("%s: login of %s from %s refused (%s)", env.node_id, op_id, terminal, code)
            return {
                "accepted": False,
                "code": code,
                "title": title,
                "message": message,
                "locked_until": _ts(until),
            }

        challenge = operators.take_challenge(body["challenge_id"], op_id, terminal, now=now)
        if challenge is None:
            return refused(
                "challenge",
                "認証の有効期限が切れました",
                "もう一度ログインをやり直してください。",
                count=False,
            )
        op = operators.get_operator(op_id)
        if op is None:
            return refused(
                "unknown_operator",
                "登録されていない操作者です",
                "操作者管理者に操作者登録を依頼してください。",
                count=False,
            )
        if op.status is not operators.OperatorStatus.ACTIVE:
            return refused(
                "revoked",
                "操作権限が失効しています",
                "操作者管理者に確認してください。",
                count=False,
            )
        if op.locked_until is not None and op.locked_until > now:
            return {
                **refused(
                    "locked_out",
                    "認証の失敗が続いたため一時的にロックされています",
                    f"{int((op.locked_until - now).total_seconds() // 60) + 1}分後に"
                    "再度お試しいただくか、"
                    "操作者管理者に解除を依頼してください。",
                    count=False,
                ),
                "locked_until": op.locked_until.timestamp(),
            }
        session_key = bytes(body["session_key"])
        if op.card_public_key is None or not verify(
            op.card_public_key,
            operators.CARD_SIGNATURE_CONTEXT
            + operators.card_certified_message(challenge, session_key),
            signature,
        ):
            return refused(
                "bad_card",
                "操作者カードを確認できません",
                "ご本人に交付された操作者カードを挿入してください。",
            )
        if not op.enrolled or not biometric.matches(body["features"], op.template_key, op.template):  # type: ignore[arg-type]
            return refused(
                "bad_biometric",
                "生体認証が一致しません",
                "手のひらをセンサーに正しくかざして、もう一度お試しください。",
            )
        resume = body.get("resume")
        if resume:
            session = operators.get_session(resume)
            if (
                session is None
                or session.operator_id != op_id
                or session.terminal_id != terminal
                or session.state not in (SessionState.OPEN, SessionState.LOCKED)
                or now >= session.expires_at
            ):
                return refused(
                    "not_same_operator",
                    "ロックした操作者本人ではありません",
                    "ロックした操作者が解除するか、ログアウトしてからログインしてください。",
                    count=False,
                )
            operators.resume_session(resume, session_key, op.card_public_key, now=now)
            session = operators.get_session(resume)
        else:
            session = operators.open_session(
                op_id, terminal, op.card_public_key, session_key, now=now
            )
        assert session is not None
        operators.clear_failures(op_id)
        login_usage(msg, "ok", session.session_id, signature)
        return {
            "accepted": True,
            "session": session.session_id,
            "name": op.name,
            "tasks": list(op.tasks),
            "permissions": list(operators.permissions_of(op_id)),
            "expires_at": session.expires_at.timestamp(),
            "idle_lock_seconds": float(policy.idle_lock_seconds),
        }

    def caller(msg: Message) -> operators.SessionRecord:
        session = operators.get_session(msg.body["session"])
        assert session is not None  # authorize passed
        return session

    def op_lock(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        operators.set_session_state(caller(msg).session_id, SessionState.LOCKED)
        return {"accepted": True}, msg.body["operator_id"]

    def op_logout(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        operators.set_session_state(caller(msg).session_id, SessionState.CLOSED)
        return {"accepted": True}, msg.body["operator_id"]

    def op_session_info(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        s = caller(msg)
        op = operators.get_operator(s.operator_id)
        return {
            "state": s.state.value,
            "tasks": list(op.tasks if op else ()),
            "permissions": list(operators.permissions_of(s.operator_id)),
        }, s.operator_id

    # ---- T-17 操作者管理 ----------------------------------------------------------------

    def admin(fn: Callable[[dict[str, Any]], tuple[dict[str, Any], str]]) -> Callable[..., Any]:
        def run(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
            try:
                return fn(msg.body)
            except OperatorError as exc:
                err = HandlerError(exc.code, str(exc), "操作者管理の処理ができません")
                err.target = msg.body.get("target", "")  # type: ignore[attr-defined]
                raise err from None
            except biometric.BiometricError as exc:
                raise HandlerError("bad_sample", str(exc), exc.title) from None

        return run

    def task_table(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        table = operators.task_table()
        return {
            "tasks": [{"task": t, "permissions": list(p)} for t, p in table.items()]
        }, "操作権限と事務の対応表"

    def set_task(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        operators.set_task(body["task_name"], body["permissions"])
        return {"accepted": True}, f"対応表 {body['task_name']}"

    def list_ops(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        return {
            "operators": [
                {
                    "operator_id": o.operator_id,
                    "name": o.name,
                    "status": o.status.value,
                    "tasks": list(o.tasks),
                    "card_serial": o.card_serial,
                    "card_registered": o.card_public_key is not None,
                    "enrolled": o.enrolled,
                    "failures": o.failures,
                    "locked_until": _ts(o.locked_until),
                }
                for o in operators.list_operators()
            ]
        }, "操作者一覧"

    def register(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        operators.register_operator(body["target"], body["name"], body["tasks"], now=env.now())
        return {"accepted": True}, body["target"]

    def change(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        operators.change_operator(
            body["target"], now=env.now(), name=body.get("name"), tasks=body.get("tasks")
        )
        return {"accepted": True}, body["target"]

    def enrol(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        key = biometric.new_key()
        template = biometric.transform(body["features"], key)
        operators.enrol_template(body["target"], key, template, now=env.now())
        return {"accepted": True}, body["target"]

    def card(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        operators.set_card(
            body["target"], body["card_serial"], bytes(body["public_key"]), now=env.now()
        )
        return {"accepted": True}, body["target"]

    def revoke(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        return {"sessions_ended": operators.revoke_operator(body["target"], now=env.now())}, body[
            "target"
        ]

    def unlock(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        if operators.get_operator(body["target"]) is None:
            raise OperatorError("unknown_operator", f"no operator {body['target']!r}")
        operators.clear_failures(body["target"])
        return {"accepted": True}, body["target"]

    # ---- T-18 監査 -------------------------------------------------------------------------

    def audit_usage(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        b = msg.body
        limit = b.get("limit") or 1000
        found = usage_entries(
            operator=b.get("filter_operator") or None,
            task=b.get("filter_task") or None,
            target=b.get("filter_target") or None,
            since=_dt(b.get("since")),
            until=_dt(b.get("until")),
            outcome=b.get("outcome") or None,
        )
        rows = found[-limit:]
        described = " ".join(
            f"{k}={b[k]}" for k in ("filter_operator", "filter_task", "filter_target") if b.get(k)
        )
        return {
            "entries": [_usage_dict(e) for e in rows],
            "truncated": len(found) > limit,
        }, f"使用履歴 {described}"[:200]

    def audit_report(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        b = msg.body
        entries = usage_entries(since=_dt(b.get("since")), until=_dt(b.get("until")))
        columns, rows = REPORTS[b["report"]](entries, b.get("threshold"))
        return {"columns": columns, "rows": rows[:10_000]}, f"監査レポート {b['report']}"

    def audit_provisions(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        b = msg.body
        found = provision_entries(
            since=_dt(b.get("since")), until=_dt(b.get("until")), result=b.get("result")
        )
        return {
            "entries": [
                {
                    "at": p.at.timestamp(),
                    "operator_id": p.operator_id,
                    "terminal_id": p.terminal_id,
                    "recipient": p.recipient,
                    "message_type": p.message_type,
                    "legal_basis": p.legal_basis,
                    "target": p.target,
                    "result": p.result,
                    "reason": p.reason,
                }
                for p in found[-10_000:]
            ]
        }, "提供・移転の記録"

    def audit_verify(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        r = verify_usage_chain()
        return {
            "ok": r.ok,
            "rows_checked": r.rows_checked,
            "first_bad_seq": r.first_bad_seq,
            "problem": (r.problem or None) and r.problem[:500],
            "kind": r.kind.value if r.kind else None,
            "head_seq": r.head_seq,
            "head_hash": r.head_hash,
            "text": r.describe()[:500],
        }, "使用履歴の検証"

    return {
        "cs.op.login_challenge": on_challenge,
        "cs.op.login": on_login,
        "cs.op.lock": operator("cs.op.lock", op_lock),
        "cs.op.logout": operator("cs.op.logout", op_logout),
        "cs.op.session_info": operator("cs.op.session_info", op_session_info),
        "cs.op.admin.task_table": operator("cs.op.admin.task_table", admin(task_table)),
        "cs.op.admin.set_task": operator("cs.op.admin.set_task", admin(set_task)),
        "cs.op.admin.operators": operator("cs.op.admin.operators", admin(list_ops)),
        "cs.op.admin.register": operator("cs.op.admin.register", admin(register)),
        "cs.op.admin.change": operator("cs.op.admin.change", admin(change)),
        "cs.op.admin.enrol": operator("cs.op.admin.enrol", admin(enrol)),
        "cs.op.admin.card": operator("cs.op.admin.card", admin(card)),
        "cs.op.admin.revoke": operator("cs.op.admin.revoke", admin(revoke)),
        "cs.op.admin.unlock": operator("cs.op.admin.unlock", admin(unlock)),
        "cs.op.audit.usage": operator("cs.op.audit.usage", audit_usage),
        "cs.op.audit.report": operator("cs.op.audit.report", audit_report),
        "cs.op.audit.provisions": operator("cs.op.audit.provisions", audit_provisions),
        "cs.op.audit.verify": operator("cs.op.audit.verify", audit_verify),
    }


def _usage_dict(e: Any) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at.timestamp(),
        "user_id": e.user_id,
        "terminal_id": e.terminal_id,
        "task": e.task,
        "reason": e.reason,
        "message_type": e.message_type,
        "target": e.target,
        "outcome": e.outcome,
        "session_id": e.session_id,
        "signed": bool(e.evidence),
    }


# --------------------------------------------------------------------------------------------
# Audit reports (T-18): pure functions over usage entries, unit-testable without a node


def _jst(at: datetime) -> datetime:
    return (at + JST).replace(tzinfo=None)


def _stamp(at: datetime) -> str:
    return _jst(at).strftime("%Y-%m-%d %H:%M:%S")


def _is_people_entry(e: Any) -> bool:
    return not e.user_id.startswith("system:")


def report_night_holiday(
    entries: list[Any], _threshold: int | None
) -> tuple[list[str], list[list[str]]]:
    """Operations at night (20:00–08:00 JST) or on a closed day (weekend, holiday, 年末年始)."""
    rows = []
    for e in entries:
        local = _jst(e.at)
        night = local.hour >= NIGHT_START or local.hour < NIGHT_END
        closed = not is_business_day(local.date())
        if _is_people_entry(e) and (night or closed):
            why = "休日" if closed else "夜間"
            rows.append([_stamp(e.at), why, e.user_id, e.terminal_id, e.task, e.target, e.outcome])
    return ["日時", "区分", "操作者", "端末", "事務種別", "対象", "結果"], rows


def report_failed_logins(
    entries: list[Any], _threshold: int | None
) -> tuple[list[str], list[list[str]]]:
    rows = [
        [_stamp(e.at), e.user_id, e.terminal_id, e.outcome.removeprefix("refused:")]
        for e in entries
        if e.message_type == "cs.op.login" and e.outcome.startswith("refused:")
    ]
    return ["日時", "操作者", "端末", "理由"], rows


SEARCH_TYPES = ("cs.op.search", "cs.op.national_query")
LOOKUP_TYPES = ("cs.op.lookup", "cs.op.national_query", "cs.op.code_candidates")


def report_mass_searches(
    entries: list[Any], threshold: int | None
) -> tuple[list[str], list[list[str]]]:
    """Operators who searched at least ``threshold`` times in one day (JST)."""
    limit = threshold or MASS_SEARCH_DEFAULT
    counts = Counter(
        (e.user_id, _jst(e.at).date().isoformat())
        for e in entries
        if e.message_type in SEARCH_TYPES
    )
    rows = [[day, user, str(n)] for (user, day), n in sorted(counts.items()) if n >= limit]
    return ["日付", "操作者", "検索件数"], rows


def report_repeated_lookups(
    entries: list[Any], threshold: int | None
) -> tuple[list[str], list[list[str]]]:
    """One operator looking up the same person at least ``threshold`` times."""
    limit = threshold or REPEATED_LOOKUP_DEFAULT
    counts: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], datetime] = {}
    for e in entries:
        if e.message_type in LOOKUP_TYPES and len(e.target) == 11 and e.target.isdigit():
            key = (e.user_id, e.target)
            counts[key] += 1
            last[key] = e.at
    rows = [
        [user, target, str(n), _stamp(last[(user, target)])]
        for (user, target), n in sorted(counts.items())
        if n >= limit
    ]
    return ["操作者", "住民票コード", "照会回数", "最終照会"], rows


REPORTS: dict[str, Callable[[list[Any], int | None], tuple[list[str], list[list[str]]]]] = {
    "night_holiday": report_night_holiday,
    "failed_logins": report_failed_logins,
    "mass_searches": report_mass_searches,
    "repeated_lookups": report_repeated_lookups,
}


# --------------------------------------------------------------------------------------------
# Bootstrap (CLI: `juki operator add` / `juki operator demo`)


@dataclass(frozen=True, slots=True)
class EnrolledOperator:
    """What the CLI needs to write the operator's card image (the key never leaves the card)."""

    operator_id: str
    name: str
    tasks: tuple[str, ...]
    card_serial: str
    card_seed: bytes
    hand: str
    """The emulated sensor's person seed whose captures match the enrolled template."""


DEMO_OPERATORS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("admin", "操作者管理者（デモ）", (ADMIN_TASK,)),
    (
        "clerk",
        "窓口担当者（デモ）",
        (
            "本人確認情報検索",
            "全国サーバ照会",
            "特例転入",
            "住民票コード変更",
            "カード関連事務",
            "統計",
        ),
    ),
    ("audit", "監査担当者（デモ）", ("監査",)),
)


def demo_operator_id(municipality: str, role: str) -> str:
    return f"op-{municipality}-{role}"


def add_operator(
    config: ApplianceConfig,
    cs_id: str,
    operator_id: str,
    name: str,
    tasks: tuple[str, ...] | list[str],
    *,
    card_serial: str,
    hand: str | None = None,
    card_seed: bytes | None = None,
) -> EnrolledOperator:
    """Register, enrol and issue a card for one operator straight into the CS's store.

    This is the installation path (the first 操作者管理者 cannot be registered through a session
    that does not exist yet); it writes a usage-log row as ``system:operator-add``. The biometric
    is enrolled from the emulated person ``hand`` (default: the operator id).
    """
    from nodes.stores import open_node_store

    if config.node(cs_id).role != "municipal_cs":
        raise OperatorError("not_cs", f"{cs_id} is not a municipal CS")
    person = hand or operator_id
    signer = Signer(card_seed) if card_seed is not None else Signer.generate()
    db = open_node_store(config, cs_id)
    now = datetime.now(UTC)
    try:
        with db.atomic():
            operators.ensure_default_tasks()
            if operators.get_operator(operator_id) is None:
                operators.register_operator(operator_id, name, tasks, now=now)
            else:
                operators.change_operator(operator_id, now=now, name=name, tasks=tasks)
            key = biometric.new_key()
            sample = biometric.synthetic_capture(
                biometric.synthetic_hand(person), random.Random(operator_id)
            )
            operators.enrol_template(operator_id, key, biometric.transform(sample, key), now=now)
            operators.set_card(operator_id, card_serial, signer.verify_key, now=now)
            append_usage(
                at=now,
                user_id="system:operator-add",
                terminal_id=cs_id,
                task=ADMIN_TASK,
                reason="操作者の初期登録",
                message_type="",
                target=operator_id,
                outcome="ok",
            )
    finally:
        db.close()
    return EnrolledOperator(operator_id, name, tuple(tasks), card_serial, signer.seed, person)


def demo_operators(config: ApplianceConfig, municipality: str) -> list[EnrolledOperator]:
    """The seeded demo trio (操作者管理者, 窓口担当者, 監査担当者) at one municipality's CS."""
    cs_id = config.cs_for_municipality(municipality)
    out = []
    for i, (role, name, tasks) in enumerate(DEMO_OPERATORS, start=1):
        op_id = demo_operator_id(municipality, role)
        serial = f"9{municipality}{i:08d}"[:15]
        out.append(add_operator(config, cs_id, op_id, name, tasks, card_serial=serial))
    return out
