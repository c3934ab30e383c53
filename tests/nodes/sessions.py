"""Operator sessions for end-to-end tests: enrol through the admin path, log in without PC/SC.

`open_test_session(app, terminal_id, operator)` makes sure ``operator`` exists at the terminal's
CS with the tasks asked for, enrolled from the emulated person of the same name and holding a
fresh in-memory operator card, then logs in with that card and the emulated sensor exactly as the
terminal would (challenge → card signature over challenge + session key → biometric → session).

The first 操作者管理者 of each CS is created by `nodes.cs_sessions.add_operator` (the installation
path `juki operator add` uses); every other operator is registered, enrolled and given a card by
that administrator through signed ``cs.op.admin.*`` requests.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from broker.errors import RemoteError
from nodes.cs_sessions import add_operator
from store.biometric import synthetic_capture, synthetic_hand
from tests.nodes.appliance import Appliance
from tui.sensor import EmulatedSensor
from tui.session import KeyCard, Session, login

ALL_CLERK_TASKS = ("本人確認情報検索", "全国サーバ照会", "特例転入", "住民票コード変更", "統計")


@dataclass
class TestSession:
    """A logged-in operator: sign bodies with ``sign`` or send with ``call``."""

    __test__ = False  # not a pytest class

    app: Appliance
    terminal_id: str
    session: Session
    card: KeyCard

    @property
    def cs(self) -> str:
        return self.session.cs

    @property
    def operator_id(self) -> str:
        return self.session.operator_id

    def sign(self, message_type: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.session.sign(message_type, body)

    def call(
        self, message_type: str, body: dict[str, Any], *, task: str = "テスト", reason: str = "試験"
    ) -> dict[str, Any]:
        body = {"task": task, "reason": reason, **body}
        with self.app.client(self.terminal_id) as client:
            return client.call(self.cs, message_type, self.session.sign(message_type, body))


def _state(app: Appliance) -> dict[str, Any]:
    state = getattr(app, "_operator_state", None)
    if state is None:
        state = {"cards": {}}
        app._operator_state = state  # type: ignore[attr-defined]
    return state


def _admin(app: Appliance, terminal_id: str) -> TestSession:
    """The CS's bootstrap 操作者管理者, freshly logged in at ``terminal_id`` (a cached session
    could have idled into the screen-saver lock)."""
    municipality = app.config.node(terminal_id).municipality
    assert municipality is not None
    cs = app.config.cs_for_municipality(municipality)
    cards = _state(app)["cards"]
    admin_id = f"op-{municipality}-testadmin"
    if admin_id not in cards:
        enrolled = add_operator(
            app.config, cs, admin_id, "試験用管理者", ("操作者管理",), card_serial="900000000000000"
        )
        cards[admin_id] = enrolled.card_seed
    card = KeyCard(admin_id, cards[admin_id])
    return TestSession(app, terminal_id, _login(app, terminal_id, cs, card), card)


def _login(
    app: Appliance, terminal_id: str, cs: str, card: KeyCard, person: str | None = None
) -> Session:
    sensor = EmulatedSensor(person or card.operator_id(), seed=1)
    with app.client(terminal_id) as client:
        return login(lambda to, t, b: client.call(to, t, b), cs, card, sensor)


def enrol_operator(
    app: Appliance, terminal_id: str, operator: str, tasks: tuple[str, ...] | list[str]
) -> KeyCard:
    """Register (or re-grant) ``operator`` through the admin path; returns its card (a new
    one, enrolled and issued, unless the operator already had one)."""
    admin = _admin(app, terminal_id)
    try:
        admin.call(
            "cs.op.admin.register",
            {"target": operator, "name": f"試験 {operator}", "tasks": list(tasks)},
            task="操作者管理",
            reason="試験用操作者の登録",
        )
    except RemoteError as exc:
        if exc.code != "duplicate":
            raise
        admin.call(
            "cs.op.admin.change",
            {"target": operator, "tasks": list(tasks)},
            task="操作者管理",
            reason="試験用操作者の変更",
        )
        known = _state(app)["cards"].get(operator)
        if known is not None:  # keep the card: a new one would end the operator's sessions
            return KeyCard(operator, known)
    sample = synthetic_capture(synthetic_hand(operator), random.Random(operator))
    admin.call(
        "cs.op.admin.enrol",
        {"target": operator, "features": sample},
        task="操作者管理",
        reason="生体認証情報の登録",
    )
    seed = os.urandom(32)
    card = KeyCard(operator, seed)
    from broker.crypto import Signer

    admin.call(
        "cs.op.admin.card",
        {
            "target": operator,
            "card_serial": "900000000000099",
            "public_key": Signer(seed).verify_key,
        },
        task="操作者管理",
        reason="操作者カードの交付",
    )
    _state(app)["cards"][operator] = seed
    return card


def open_test_session(
    app: Appliance,
    terminal_id: str,
    operator: str,
    *,
    tasks: tuple[str, ...] | list[str] = ALL_CLERK_TASKS,
) -> TestSession:
    """Enrol ``operator`` with ``tasks`` at the terminal's CS and log in; see the module doc."""
    card = enrol_operator(app, terminal_id, operator, tasks)
    cs = _admin(app, terminal_id).cs
    return TestSession(app, terminal_id, _login(app, terminal_id, cs, card), card)
