"""操作者管理 (T-17 operator administration): 操作権限と事務の対応表, operators and their grants,
biometric enrolment, operator card issue, change, revocation and lifting a lockout.

Each action is a signed ``cs.op.admin.*`` request: the CS checks the administrator's permission,
applies it at once (the next request of the operator concerned already sees it) and logs it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    SelectionList,
    Static,
)

from tui.errors import SESSION_CODES, ErrorInfo, describe
from tui.messages import Answered, Failed
from tui.widgets import StatusBar

if TYPE_CHECKING:
    from tui.shell import TerminalApp

ADMIN_TASK = "操作者管理"
JST = timezone(timedelta(hours=9))
DONE = {
    "register": "操作者を登録しました",
    "change": "操作権限を変更しました",
    "enrol": "生体認証情報を登録しました",
    "card": "操作者カードを発行しました",
    "revoke": "操作者を失効させました",
    "unlock": "ロックアウトを解除しました",
}


class OperatorForm(ModalScreen[dict[str, Any] | None]):
    """操作者の登録 / 変更: 操作者ID, 氏名 and the tasks (事務) granted."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "取消", id="form.cancel"),
        Binding("ctrl+s", "save", "保存", id="form.save"),
    ]

    def __init__(self, tasks: list[str], current: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.tasks = tasks
        self.current = current

    def compose(self) -> ComposeResult:
        cur = self.current or {}
        granted = set(cur.get("tasks", ()))
        with Vertical(id="form-box"):
            yield Label("操作者の変更" if self.current else "操作者の登録", id="form-title")
            yield Input(
                value=cur.get("operator_id", ""),
                placeholder="操作者ID（英数字 . _ -）",
                id="form-id",
                disabled=self.current is not None,
            )
            yield Input(value=cur.get("name", ""), placeholder="氏名", id="form-name")
            yield Label("付与する事務（スペースで選択）")
            yield SelectionList[str](*[(t, t, t in granted) for t in self.tasks], id="form-tasks")
            yield Button("保存 (Ctrl+S)", id="form-save", variant="primary")

    def action_save(self) -> None:
        op_id = self.query_one("#form-id", Input).value.strip()
        name = self.query_one("#form-name", Input).value.strip()
        tasks = list(self.query_one("#form-tasks", SelectionList).selected)
        if not op_id or not name:
            self.notify("操作者IDと氏名を入力してください", severity="error")
            return
        self.dismiss({"target": op_id, "name": name, "tasks": tasks})

    @on(Button.Pressed, "#form-save")
    def _save(self) -> None:
        self.action_save()

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question (y / n)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "はい", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "いいえ", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            yield Static("はい (y) ／ いいえ (n)")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AdminScreen(Screen[None]):
    """Operators above, the 対応表 below; actions act on the highlighted operator."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "戻る", id="admin.back"),
        Binding("f2", "register", "登録", id="admin.register"),
        Binding("f3", "change", "権限変更", id="admin.change"),
        Binding("f4", "enrol", "生体登録", id="admin.enrol"),
        Binding("f6", "issue_card", "カード発行", id="admin.card"),
        Binding("f7", "revoke", "失効", id="admin.revoke"),
        Binding("f8", "unlock", "ロック解除", id="admin.unlock"),
        Binding("f5", "reload", "再読込", id="admin.reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.operators: list[dict[str, Any]] = []
        self.tasks: dict[str, list[str]] = {}

    @property
    def terminal(self) -> TerminalApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="admin-reason-row"):
            yield Label("処理事由: ")
            yield Input(placeholder="例: 人事異動による権限変更", id="admin-reason")
        yield Label("操作者一覧", classes="section")
        yield DataTable(id="admin-operators", cursor_type="row", zebra_stripes=True)
        yield Label("操作権限と事務の対応表", classes="section")
        yield DataTable(id="admin-tasks", cursor_type="row")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        ops = self.query_one("#admin-operators", DataTable)
        ops.add_columns("操作者ID", "氏名", "状態", "事務", "カード", "生体", "失敗", "ロック")
        self.query_one("#admin-tasks", DataTable).add_columns("事務", "操作権限（電文）")
        self.terminal.refresh_status()
        self.action_reload()
        ops.focus()

    def blank(self) -> None:
        self.operators = []
        self.query_one("#admin-operators", DataTable).clear()
        self.query_one("#admin-tasks", DataTable).clear()

    # -- requests -----------------------------------------------------------------------------

    def _reason(self, *, required: bool) -> str | None:
        reason = self.query_one("#admin-reason", Input).value.strip()
        if required and not reason:
            self.terminal.show_error(
                ErrorInfo(
                    "処理事由が未入力です",
                    "操作者管理の操作には処理事由の記録が必要です。",
                    "画面上部の「処理事由」を入力してから操作してください。",
                    "task_reason",
                )
            )
            return None
        return reason or "操作者一覧の確認"

    def _send(self, tag: str, message_type: str, body: dict[str, Any], reason: str) -> None:
        self.terminal.request(self, tag, message_type, body, task=ADMIN_TASK, reason=reason)

    def action_reload(self) -> None:
        reason = self._reason(required=False) or ""
        self._send("operators", "cs.op.admin.operators", {}, reason)
        self._send("tasks", "cs.op.admin.task_table", {}, reason)

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one("#admin-operators", DataTable)
        if not self.operators or table.cursor_row < 0:
            return None
        return self.operators[min(table.cursor_row, len(self.operators) - 1)]

    def action_register(self) -> None:
        reason = self._reason(required=True)
        if reason is None:
            return

        def done(result: dict[str, Any] | None) -> None:
            if result is not None:
                self._send("register", "cs.op.admin.register", result, reason)

        self.app.push_screen(OperatorForm(list(self.tasks)), done)

    def action_change(self) -> None:
        op = self._selected()
        reason = self._reason(required=True) if op else None
        if op is None or reason is None:
            return

        def done(result: dict[str, Any] | None) -> None:
            if result is not None:
                self._send("change", "cs.op.admin.change", result, reason)

        self.app.push_screen(OperatorForm(list(self.tasks), op), done)

    def action_enrol(self) -> None:
        op = self._selected()
        reason = self._reason(required=True) if op else None
        if op is None or reason is None:
            return
        self.notify(f"{op['operator_id']} 本人が生体センサーに手のひらをかざしてください")
        self._capture_and_enrol(op["operator_id"], reason)

    @work(thread=True, exit_on_error=False, group="admin-device")
    def _capture_and_enrol(self, target: str, reason: str) -> None:
        try:
            sample = self.terminal.backend.sensor.capture(target)
        except Exception as exc:
            self.post_message(Failed("enrol", describe(exc)))
            return
        body = {"target": target, "features": [float(x) for x in sample.features]}
        self.app.call_from_thread(self._send, "enrol", "cs.op.admin.enrol", body, reason)

    def action_issue_card(self) -> None:
        op = self._selected()
        reason = self._reason(required=True) if op else None
        if op is None or reason is None:
            return
        self._write_card(op["operator_id"], reason)

    @work(thread=True, exit_on_error=False, group="admin-device")
    def _write_card(self, target: str, reason: str) -> None:
        from tui.card.image import save_image
        from tui.card.operator import new_operator_image

        t = self.terminal
        now = datetime.fromtimestamp(t.clock(), JST)
        serial = f"9{int(t.clock() * 1000) % 10**14:014d}"
        image = new_operator_image(
            target,
            serial=serial,
            municipality_code=t.municipality[0],
            municipality_name=t.municipality[1],
            expires=(now + timedelta(days=5 * 365)).strftime("%Y%m%d"),
        )
        path = Path(t.cards_dir) / f"{target}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(path, image)
        except Exception as exc:
            self.post_message(Failed("card", describe(exc)))
            return
        self.card_path = path
        body = {"target": target, "card_serial": serial, "public_key": image.public_key}
        self.app.call_from_thread(self._send, "card", "cs.op.admin.card", body, reason)

    def action_revoke(self) -> None:
        op = self._selected()
        reason = self._reason(required=True) if op else None
        if op is None or reason is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._send("revoke", "cs.op.admin.revoke", {"target": op["operator_id"]}, reason)

        self.app.push_screen(
            ConfirmDialog(f"操作者 {op['operator_id']} を失効させますか？（即時に無効になります）"),
            done,
        )

    def action_unlock(self) -> None:
        op = self._selected()
        reason = self._reason(required=True) if op else None
        if op is None or reason is None:
            return
        self._send("unlock", "cs.op.admin.unlock", {"target": op["operator_id"]}, reason)

    # -- answers ------------------------------------------------------------------------------

    @on(Answered)
    def _answered(self, message: Answered) -> None:
        if message.tag == "operators":
            self._show_operators(message.data["operators"])
        elif message.tag == "tasks":
            self.tasks = {t["task"]: list(t["permissions"]) for t in message.data["tasks"]}
            table = self.query_one("#admin-tasks", DataTable)
            table.clear()
            for task, perms in self.tasks.items():
                table.add_row(task, ", ".join(perms))
        else:
            text = DONE.get(message.tag, "完了しました")
            if message.tag == "card":
                text += f"（カードイメージ: {getattr(self, 'card_path', '')}）"
            self.notify(text)
            self.action_reload()

    def _show_operators(self, operators: list[dict[str, Any]]) -> None:
        self.operators = operators
        table = self.query_one("#admin-operators", DataTable)
        table.clear()
        for o in operators:
            locked = ""
            if o.get("locked_until") and o["locked_until"] > self.terminal.clock():
                locked = datetime.fromtimestamp(o["locked_until"], JST).strftime("%H:%Mまで")
            table.add_row(
                o["operator_id"],
                o["name"],
                "有効" if o["status"] == "active" else "失効",
                "、".join(o["tasks"]),
                o["card_serial"] if o["card_registered"] else "未発行",
                "登録済" if o["enrolled"] else "未登録",
                str(o["failures"]),
                locked,
            )

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        if message.error.code not in SESSION_CODES:
            self.terminal.show_error(message.error)
