"""窓口事務（CS側）(counter tasks at the CS): 職権修正 with a second operator, 送付先 counts and
整合性確認 — the headless half of the terminal's screens (issue 6).

V-12 / T-15 職権修正: one operator proposes (住民票コード, the items to correct with their new
values, a reason); the proposal is checked now exactly as the registry's 職権修正 would be checked
at CS-1 (items a 職権修正 may change per store.validation.REASON_RULES, formats, the person is
current, something actually changes), and kept. A *different* operator whose granted tasks cover
``cs.op.correction.approve`` (the 本人確認情報管理責任者's permission) approves or rejects it: the
proposer is refused with rule V-12 whatever they hold (「入力、削除及び訂正を行った者以外の者が
確認する」). Approval does not touch file (2): the CS sends ``registry.cs.correction`` to the
existing registry, the only source of file (2) updates (V-6), and the registry sends the
ordinary CS-1 職権修正 that the CS then applies and passes on to the prefecture and national. The
proposal row keeps proposer, approver, both terminals, the times, old and new values and the
outcome, and is never purged (store/corrections.py); both requests are usage-logged by the
``operator(type, fn)`` wrapper with operator, terminal, 事務種別 and 処理事由.

T-07 送付先情報通知: per-day counts only (§4.10: no statistics from file (3)'s personal data).

T-08 整合性確認 (CS-6): ``nodes.consistency.run_check`` runs one at a time, supervised by a
background thread of the CS. The check itself runs in a child process (``python -m
nodes.cs_tasks consistency``): run_check opens and binds the store the way a tool does, which
inside the CS would re-point the process-global store binding under the service loop's journal.
The child reports progress as JSON lines; the CS keeps the run and its summary (table
``consistency_run``) so the terminal can poll ``cs.op.consistency.status``. With ``repair`` the
child queues the re-sends in the CS's outbox, which the running CS relays.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.envelope import Message
from broker.service import Context, HandlerError
from nodes.env import NodeEnv
from store import corrections, identity
from store.auditlog import append_usage
from store.corrections import CorrectionError, CorrectionStatus, Proposal
from store.records import ChangeReason, RecordStatus, record_to_dict
from store.validation import ALWAYS_ALLOWED, REASON_RULES, apply_update, validate_update

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]

CORRECTABLE: frozenset[str] = frozenset(
    REASON_RULES[ChangeReason.CORRECTION_BY_AUTHORITY].allowed
    - ALWAYS_ALLOWED  # 届出の年月日 / 異動事由詳細 are the registry's metadata of the 異動
    - {"municipality_code"}  # another municipality's record is never this CS's correction
)
"""Items an operator may propose to correct (store.validation's 職権修正 rule)."""

CORRECTION_NOTICE = "registry.cs.correction"
DESTINATION_NOTICE = "cs.registry.destination"
DESTINATION_FORWARD = "cardmgmt.cs.destination"
DESTINATION_ACK = "cs.cardmgmt.destination_ack"
DESTINATION_DAYS = 31
MAX_MISMATCHES_SHOWN = 1000


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _refusal(code: str, message: str, title: str, target: str = "") -> HandlerError:
    exc = HandlerError(code, message, title)
    exc.target = target  # type: ignore[attr-defined]  # what the usage-log row names
    return exc


# --------------------------------------------------------------------------------------------
# 職権修正: checks shared by propose and approve


def _current(code: str, target: str) -> Any:
    record = identity.get_by_resident_code(code)
    if record is None or record.record_status is not RecordStatus.CURRENT:
        raise _refusal(
            "not_found",
            "no current resident with this 住民票コード",
            "対象者が見つかりません",
            target,
        )
    return record


def checked_correction(record: Any, changes: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The corrected items in file (2)'s notation, after the CS-1 checks a 職権修正 will meet.

    Raises HandlerError with the rule: ``not_correctable`` for an item outside CORRECTABLE,
    else the first rule store.validation finds (V-1 format, V-13 frozen record, V-3 "nothing is
    corrected" …), so a proposal that the CS would refuse later is refused now.
    """
    target = f"職権修正 {record.resident_code}"
    if not changes:
        raise _refusal("empty", "no item to correct", "訂正する項目を入力してください", target)
    outside = sorted(set(changes) - CORRECTABLE)
    if outside:
        raise _refusal(
            "not_correctable",
            f"a 職権修正 may not change: {', '.join(outside)}",
            "職権修正では訂正できない項目です",
            target,
        )
    today = (now + timedelta(hours=9)).date()
    raw = {
        **changes,
        "resident_code": record.resident_code,
        "change_reason": ChangeReason.CORRECTION_BY_AUTHORITY.value,
        "change_date": today.isoformat(),
        "request_number": "PROPOSAL-CHECK",
        "sequence": record.sequence + 1,
    }
    update, violations = validate_update(raw, record)
    if update is None:
        v = violations[0]
        more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
        raise _refusal(
            v.rule,
            f"{v.field or ''}: {v.message}{more}"[:500],
            "訂正内容が本人確認情報の検査に合格しません",
            target,
        )
    after = record_to_dict(apply_update(record, update, now=now, operator_id="", terminal_id=""))
    return {k: after[k] for k in changes}


def _applied(p: Proposal) -> bool:
    if p.status is not CorrectionStatus.APPROVED:
        return False
    record = identity.get_by_resident_code(p.resident_code)
    if record is None:
        return False
    now = record_to_dict(record)
    return all(now.get(k) == v for k, v in p.changes.items())


def proposal_dict(p: Proposal) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "resident_code": p.resident_code,
        "changes": p.changes,
        "before": p.before,
        "note": p.note,
        "status": p.status.value,
        "proposer_id": p.proposer_id,
        "proposer_terminal": p.proposer_terminal,
        "proposed_at": p.proposed_at.timestamp(),
        "decided_by": p.decided_by,
        "decided_terminal": p.decided_terminal,
        "decided_at": _ts(p.decided_at),
        "decision_note": p.decision_note,
        "applied": _applied(p),
    }


# --------------------------------------------------------------------------------------------
# 整合性確認: the supervising thread and the child process


def summarize(report: dict[str, Any], text: str = "") -> dict[str, Any]:
    """What the terminal shows of a ConsistencyReport.to_dict(): the verdict, the cost, the
    peers and the first mismatches (the report's own shape stays the tool's business)."""
    mismatches = report.get("mismatches") or []
    return {
        "ok": bool(report.get("ok", not mismatches)),
        "cs_records": int(report.get("cs_records") or 0),
        "round_trips": int(report.get("round_trips") or 0),
        "wire_bytes": int(report.get("wire_bytes") or 0),
        "full_dump_bytes": int(report.get("full_dump_bytes_all_peers") or 0),
        "peers": [
            {
                "node": str(p["node"]),
                "tier": str(p["tier"]),
                "records": int(p.get("records") or 0),
                "mismatches": int(p.get("mismatches") or 0),
                "round_trips": int(p.get("round_trips") or 0),
                "wire_bytes": int(p.get("wire_bytes") or 0),
            }
            for p in report.get("peers") or []
        ],
        "mismatch_count": len(mismatches),
        "mismatches": [
            {
                "resident_code": m["resident_code"],
                "tier": str(m["tier"]),
                "node": str(m["node"]),
                "kind": m["kind"],
                "fields": [str(f) for f in m.get("fields") or []][:100],
            }
            for m in mismatches[:MAX_MISMATCHES_SHOWN]
        ],
        "repairs": len(report.get("repairs") or []),
        "text": text[:20_000],
    }


class ConsistencyRunner:
    """One 整合性確認 at a time in this CS process; progress is kept in memory while it runs."""

    def __init__(self, env: NodeEnv) -> None:
        self.env = env
        self._lock = threading.Lock()
        self._active: str | None = None
        self._progress: tuple[int, int, str] = (0, 0, "")
        self._thread: threading.Thread | None = None

    def active(self) -> str | None:
        with self._lock:
            return self._active

    def progress(self) -> tuple[int, int, str]:
        with self._lock:
            return self._progress

    def claim(self, run_id: str) -> bool:
        with self._lock:
            if self._active is not None:
                return False
            self._active = run_id
            self._progress = (0, 0, "starting")
            return True

    def launch(self, run: corrections.ConsistencyRun, usage: dict[str, Any]) -> None:
        """Start the thread once the run row is committed (the caller's transaction)."""
        self._thread = threading.Thread(
            target=self._supervise,
            args=(run, usage),
            name=f"consistency-{run.run_id}",
            daemon=True,
        )
        self._thread.start()

    def release(self, run_id: str) -> None:
        with self._lock:
            if self._active == run_id:
                self._active = None

    def _supervise(self, run: corrections.ConsistencyRun, usage: dict[str, Any]) -> None:
        summary: dict[str, Any] | None = None
        error: str | None = None
        try:
            summary = self._run_child(run)
        except Exception as exc:  # the run is reported failed; the CS goes on
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("%s: 整合性確認 %s failed: %s", self.env.node_id, run.run_id, error)
        try:
            with self.env.atomic():
                done, total, desc = self.progress()
                corrections.update_run(run.run_id, done=done, total=total, description=desc)
                corrections.finish_run(run.run_id, now=self.env.now(), summary=summary, error=error)
                result = "error" if error else "ok"
                found = "" if summary is None else f" → {summary['mismatch_count']} mismatches"
                append_usage(
                    **usage,
                    at=self.env.now(),
                    target=f"整合性確認 {run.run_id} 終了{found}"[:255],
                    outcome=result,
                )
        except Exception:
            log.exception("%s: could not record the end of 整合性確認 %s", self.env.node_id, run)
        finally:
            self.release(run.run_id)
            self.env.wake()  # repairs, if any, are waiting in the outbox

    def _run_child(self, run: corrections.ConsistencyRun) -> dict[str, Any]:
        config = self.env.config
        cmd = [
            sys.executable,
            "-m",
            "nodes.cs_tasks",
            "consistency",
            "--config",
            str(config.path),
            "--municipality",
            self.env.municipality,
        ]
        if run.repair:
            cmd.append("--repair")
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=os.environ.copy(),
        )
        result: dict[str, Any] | None = None
        failure = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "progress" in event:
                done, total, desc = event["progress"]
                with self._lock:
                    self._progress = (int(done), int(total), str(desc)[:300])
            elif "summary" in event:
                result = event["summary"]
            elif "error" in event:
                failure = str(event["error"])
        code = proc.wait()
        if result is None:
            raise RuntimeError(failure or f"the check ended with exit code {code}")
        return result


def run_dict(run: corrections.ConsistencyRun, runner: ConsistencyRunner) -> dict[str, Any]:
    done, total, desc = run.done, run.total, run.description
    if run.state == "running" and runner.active() == run.run_id:
        done, total, desc = runner.progress()
    return {
        "run_id": run.run_id,
        "state": run.state,
        "repair": run.repair,
        "operator_id": run.operator_id,
        "started_at": run.started_at.timestamp(),
        "finished_at": _ts(run.finished_at),
        "done": done,
        "total": total,
        "description": desc[:300],
        "error": run.error,
        "report": run.summary,
    }


# --------------------------------------------------------------------------------------------
# handlers


def task_handlers(env: NodeEnv, operator: Callable[..., Any]) -> dict[str, Any]:
    """Operator requests for V-12 corrections, 送付先 counts and 整合性確認; ``operator(type, fn)``
    usage-logs each (fn returns (reply data, usage-log target))."""
    corrections.ensure_tables()
    registry = env.registry_of(env.municipality)
    runner = ConsistencyRunner(env)

    # ---------------------------------------------------------------- V-12 corrections

    def op_propose(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        code = body["resident_code"]
        record = _current(code, f"職権修正提案 {code}")
        now = env.now()
        changes = checked_correction(record, dict(body["changes"]), now)
        on_file = record_to_dict(record)
        p = corrections.propose(
            code,
            changes,
            {k: on_file.get(k) for k in changes},
            body["note"],
            proposer_id=body["operator_id"],
            proposer_terminal=msg.header.sender,
            now=now,
        )
        items = ",".join(sorted(changes))
        return {"proposal": proposal_dict(p)}, f"職権修正提案 {p.proposal_id} {code} [{items}]"

    def op_list(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        status = CorrectionStatus(body["status"]) if body.get("status") else None
        found = corrections.list_proposals(
            status=status, resident_code=body.get("resident_code"), limit=body.get("limit") or 200
        )
        found.sort(key=lambda p: p.status is not CorrectionStatus.PENDING)  # pending first
        what = body.get("status") or "all"
        return {
            "proposals": [proposal_dict(p) for p in found]
        }, f"職権修正一覧 {what} {len(found)}件"

    def decide(msg: Message, outcome: CorrectionStatus) -> tuple[Proposal, str]:
        body = msg.body
        label = "承認" if outcome is CorrectionStatus.APPROVED else "却下"
        pid = body["proposal_id"]
        target = f"職権修正{label} {pid}"
        p = corrections.get_proposal(pid)
        if p is None:
            raise _refusal("not_found", f"no proposal {pid}", "訂正案が見つかりません", target)
        target = f"{target} {p.resident_code}"
        if p.proposer_id == body["operator_id"]:
            raise _refusal(
                "V-12",
                "the operator who entered a correction may not confirm it "
                "(「入力、削除及び訂正を行った者以外の者が確認する」)",
                "訂正を入力した操作者本人は承認・却下できません（別の操作者が確認します）",
                target,
            )
        if p.status is not CorrectionStatus.PENDING:
            raise _refusal(
                "decided",
                f"proposal {pid} was already {p.status.value} by {p.decided_by}",
                "この訂正案は処理済みです",
                target,
            )
        if outcome is CorrectionStatus.APPROVED:
            record = _current(p.resident_code, target)
            on_file = record_to_dict(record)
            moved = sorted(k for k, v in p.before.items() if on_file.get(k) != v)
            if moved:
                raise _refusal(
                    "stale",
                    f"the record changed since the proposal: {', '.join(moved)}",
                    "提案後に本人確認情報が変更されました。訂正案を作り直してください",
                    target,
                )
            checked_correction(record, p.changes, env.now())
        try:
            decided = corrections.decide(
                pid,
                outcome,
                decided_by=body["operator_id"],
                decided_terminal=msg.header.sender,
                note=body.get("note"),
                now=env.now(),
            )
        except CorrectionError as exc:  # lost a race with another approver
            raise _refusal(exc.code, str(exc), "この訂正案は処理済みです", target) from None
        return decided, target

    def op_approve(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        p, target = decide(msg, CorrectionStatus.APPROVED)
        ctx.send(
            registry,
            CORRECTION_NOTICE,
            {
                "proposal_id": p.proposal_id,
                "resident_code": p.resident_code,
                "changes": p.changes,
                "note": (p.note or "職権修正")[:200],
                "proposer_id": p.proposer_id,
                "approver_id": msg.body["operator_id"],
            },
        )
        return {"proposal": proposal_dict(p)}, target

    def op_reject(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        p, target = decide(msg, CorrectionStatus.REJECTED)
        return {"proposal": proposal_dict(p)}, target

    # ---------------------------------------------------------------- T-07 送付先 counts

    def op_destinations(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        from store.retention import destination_due_at

        since_day = msg.body.get("since")
        if since_day:
            start = date.fromisoformat(since_day)
        else:
            start = env.today() - timedelta(days=DESTINATION_DAYS - 1)
        since = datetime(start.year, start.month, start.day, tzinfo=UTC) - timedelta(hours=9)
        counts = corrections.destination_counts(
            since=since,
            notice_type=DESTINATION_NOTICE,
            forward_type=DESTINATION_FORWARD,
            ack_type=DESTINATION_ACK,
        )
        # the node's purge job runs with store.retention's default policy
        due = None if counts.oldest_sent_at is None else destination_due_at(counts.oldest_sent_at)
        return {
            "days": counts.days[-400:],
            "awaiting_ack": counts.awaiting_ack,
            "awaiting_purge": counts.awaiting_purge,
            "next_purge_due": _ts(due),
        }, f"送付先情報通知 件数 {start.isoformat()}〜"

    # ---------------------------------------------------------------- T-08 整合性確認

    def _settled(run: corrections.ConsistencyRun | None) -> corrections.ConsistencyRun | None:
        """A run left 'running' by a CS that stopped is failed, not running."""
        if run is not None and run.state == "running" and runner.active() != run.run_id:
            corrections.abandon_running(now=env.now())
            return corrections.last_run()
        return run

    def op_consistency_start(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        body = msg.body
        repair = bool(body.get("repair"))
        _settled(corrections.running_run())
        busy = runner.active()
        if busy is not None:
            raise _refusal(
                "busy",
                f"整合性確認 {busy} is still running",
                "整合性確認を実行中です。終了を待ってください",
                f"整合性確認 {busy} 実行中",
            )
        run = corrections.new_run(
            body["operator_id"], msg.header.sender, repair=repair, now=env.now()
        )
        if not runner.claim(run.run_id):
            raise _refusal("busy", "another 整合性確認 started", "整合性確認を実行中です")
        usage = {
            "user_id": body["operator_id"],
            "terminal_id": msg.header.sender,
            "task": body["task"],
            "reason": body["reason"],
            "message_type": "cs.op.consistency.start",
            "session_id": body.get("session") or "",
        }
        # the thread writes only when the check ends, so it may start before this commit
        runner.launch(run, usage)
        mode = "再送付あり" if repair else "照合のみ"
        return run_dict(run, runner), f"整合性確認 {run.run_id} 開始 ({mode})"

    def op_consistency_status(msg: Message, ctx: Context) -> tuple[dict[str, Any], str]:
        run = _settled(corrections.last_run())
        if run is None:
            return {"running": False, "run": None}, "整合性確認 状況"
        return (
            {"running": run.state == "running", "run": run_dict(run, runner)},
            f"整合性確認 状況 {run.run_id}",
        )

    return {
        "cs.op.correction.propose": operator("cs.op.correction.propose", op_propose),
        "cs.op.correction.list": operator("cs.op.correction.list", op_list),
        "cs.op.correction.approve": operator("cs.op.correction.approve", op_approve),
        "cs.op.correction.reject": operator("cs.op.correction.reject", op_reject),
        "cs.op.destinations": operator("cs.op.destinations", op_destinations),
        "cs.op.consistency.start": operator("cs.op.consistency.start", op_consistency_start),
        "cs.op.consistency.status": operator("cs.op.consistency.status", op_consistency_status),
    }


# --------------------------------------------------------------------------------------------
# the child process: `python -m nodes.cs_tasks consistency --config PATH --municipality M`


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def child_main(argv: list[str] | None = None) -> int:
    """Run one check as the CS (its keys, its store) and print JSON lines for the supervisor."""
    parser = argparse.ArgumentParser(prog="python -m nodes.cs_tasks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("consistency", help="one 整合性確認 (progress and summary as JSON lines)")
    c.add_argument("--config", required=True)
    c.add_argument("--municipality", required=True)
    c.add_argument("--repair", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from juki.config import load
    from nodes.consistency import ProgressEvent, run_check

    def progress(ev: ProgressEvent) -> None:
        _emit({"progress": [ev.done, ev.total, ev.description]})

    try:
        report = run_check(
            load(args.config), args.municipality, repair=args.repair, progress=progress
        )
    except Exception as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}"[:500]})
        return 1
    describe = getattr(report, "describe", None)
    text = describe() if callable(describe) else ""
    _emit({"summary": summarize(report.to_dict(), text)})
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
