"""Operator sessions at the CS, end to end through RabbitMQ (issue 5): login with card +
biometric, refusals and lockout, per-command signatures kept as evidence, permissions checked by
the CS for requests crafted without the terminal, revocation, lock, unlock and the idle lock."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.crypto import Signer
from broker.errors import RemoteError
from store.operators import command_message
from tests.nodes.appliance import Appliance
from tests.nodes.sessions import TestSession, enrol_operator, open_test_session
from tui.sensor import EmulatedSensor
from tui.session import KeyCard, LoginRefused, login

pytestmark = [pytest.mark.rabbitmq]

TERM = "term.041009.001"
CS = "cs.041009"
IDLE = 4.0
FAILURES = 3
STATS = {"task": "統計", "reason": "月次集計"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    a = Appliance(
        Path(tmp_path_factory.mktemp("sessions")),
        policy={
            "idle_lock_seconds": IDLE,
            "login_failures_before_lockout": FAILURES,
            "lockout_seconds": 600,
        },
    )
    a.juki("keys", "init")
    a.juki("store", "init", "--all")
    a.start()
    try:
        yield a
    finally:
        a.stop()


def _usage(app: Appliance, where: str, params: tuple) -> list[tuple]:
    return app.rows(
        CS,
        "SELECT user_id, terminal_id, task, message_type, outcome, session_id, evidence "
        f"FROM usage_log WHERE {where} ORDER BY seq",
        params,
    )


def _try_login(app: Appliance, card: KeyCard, person: str, resume=None):  # type: ignore[no-untyped-def]
    with app.client(TERM) as client:
        return login(
            lambda to, t, b: client.call(to, t, b),
            CS,
            card,
            EmulatedSensor(person, seed=7),
            resume=resume,
        )


def test_login_then_signed_request_is_logged_with_its_evidence(app: Appliance) -> None:
    clerk = open_test_session(app, TERM, "clerk-a", tasks=("統計",))
    answer = clerk.call("cs.op.statistics", {}, **STATS)
    assert "by_day_and_reason" in answer
    rows = _usage(app, "user_id = ? AND message_type = ?", ("clerk-a", "cs.op.statistics"))
    user, terminal, task, _type, outcome, session_id, evidence = rows[-1]
    assert (user, terminal, task, outcome) == ("clerk-a", TERM, "統計", "ok")
    assert session_id == clerk.session.session_id
    # the evidence is the session key's signature over exactly the command that was sent
    from broker.crypto import verify

    body = clerk.session.sign("cs.op.statistics", {**STATS})
    assert len(evidence) == 64
    assert verify(
        clerk.session.signer.verify_key,
        command_message("cs.op.statistics", {**body, "signature": evidence}),
        bytes(evidence),
    )
    logins = _usage(app, "user_id = ? AND message_type = ?", ("clerk-a", "cs.op.login"))
    assert logins[-1][4] == "ok" and logins[-1][2] == "操作者認証"


def test_requests_without_a_valid_session_are_refused(app: Appliance) -> None:
    clerk = open_test_session(app, TERM, "clerk-b", tasks=("統計",))
    with app.client(TERM) as client:
        with pytest.raises(RemoteError) as bare:
            client.call(CS, "cs.op.statistics", {"operator_id": "clerk-b", **STATS})
        assert bare.value.code == "unauthenticated"
        forged = clerk.sign("cs.op.statistics", STATS)
        forged["signature"] = Signer.generate().sign(command_message("cs.op.statistics", forged))
        with pytest.raises(RemoteError) as bad:
            client.call(CS, "cs.op.statistics", forged)
        assert bad.value.code == "bad_signature"
        tampered = clerk.sign("cs.op.statistics", STATS)
        tampered["reason"] = "別の理由"
        with pytest.raises(RemoteError) as changed:
            client.call(CS, "cs.op.statistics", tampered)
        assert changed.value.code == "bad_signature"
    # the session is bound to the terminal it was opened on
    with app.client("term.041009.002") as other:
        with pytest.raises(RemoteError) as elsewhere:
            other.call(CS, "cs.op.statistics", clerk.sign("cs.op.statistics", STATS))
        assert elsewhere.value.code == "unauthenticated"


def test_permission_is_checked_by_the_cs_even_without_the_terminal(app: Appliance) -> None:
    clerk = open_test_session(app, TERM, "clerk-c", tasks=("統計",))
    criteria = {"criteria": {"name_kanji": "仙台", "birth_date": "1990-04-01"}}
    with pytest.raises(RemoteError) as refused:
        clerk.call("cs.op.search", criteria, task="本人確認情報検索", reason="窓口での確認")
    assert refused.value.code == "forbidden"
    with pytest.raises(RemoteError) as admin:
        clerk.call("cs.op.admin.operators", {}, task="操作者管理", reason="一覧")
    assert admin.value.code == "forbidden"
    # granting the task takes effect at the next request, without a new login
    enrol_operator(app, TERM, "clerk-c", ("統計", "本人確認情報検索"))
    found = clerk.call("cs.op.search", criteria, task="本人確認情報検索", reason="窓口での確認")
    assert found["records"] == []


def test_wrong_biometric_and_wrong_card_are_refused_and_logged(app: Appliance) -> None:
    card = enrol_operator(app, TERM, "clerk-d", ("統計",))
    with pytest.raises(LoginRefused) as bio:
        _try_login(app, card, person="someone-else")
    assert bio.value.code == "bad_biometric"
    stolen = KeyCard("clerk-d", os.urandom(32))  # a card claiming the id, with another key
    with pytest.raises(LoginRefused) as wrong:
        _try_login(app, stolen, person="clerk-d")
    assert wrong.value.code == "bad_card"
    outcomes = [
        r[4] for r in _usage(app, "user_id = ? AND message_type = ?", ("clerk-d", "cs.op.login"))
    ]
    assert outcomes[-2:] == ["refused:bad_biometric", "refused:bad_card"]
    # a success resets the failure count
    assert _try_login(app, card, person="clerk-d").operator_id == "clerk-d"


def test_repeated_failures_lock_the_operator_out(app: Appliance) -> None:
    card = enrol_operator(app, TERM, "clerk-e", ("統計",))
    for _ in range(FAILURES):
        with pytest.raises(LoginRefused):
            _try_login(app, card, person="impostor")
    with pytest.raises(LoginRefused) as locked:
        _try_login(app, card, person="clerk-e")  # the right person, but locked out now
    assert locked.value.code == "locked_out"
    assert locked.value.locked_until is not None and locked.value.locked_until > time.time() + 500
    # the 操作者管理者 can lift it
    from tests.nodes.sessions import _admin

    _admin(app, TERM).call(
        "cs.op.admin.unlock", {"target": "clerk-e"}, task="操作者管理", reason="解除"
    )
    assert _try_login(app, card, person="clerk-e").operator_id == "clerk-e"


def test_revoked_operator_is_refused_at_the_next_request(app: Appliance) -> None:
    from tests.nodes.sessions import _admin

    clerk = open_test_session(app, TERM, "clerk-f", tasks=("統計",))
    clerk.call("cs.op.statistics", {}, **STATS)
    ended = _admin(app, TERM).call(
        "cs.op.admin.revoke", {"target": "clerk-f"}, task="操作者管理", reason="異動"
    )
    assert ended["sessions_ended"] == 1
    with pytest.raises(RemoteError) as refused:
        clerk.call("cs.op.statistics", {}, **STATS)
    assert refused.value.code == "revoked"
    with pytest.raises(LoginRefused) as again:
        _try_login(app, clerk.card, person="clerk-f")
    assert again.value.code == "revoked"


def test_lock_unlock_by_the_same_operator_only_and_logout(app: Appliance) -> None:
    clerk = open_test_session(app, TERM, "clerk-g", tasks=("統計",))
    other = enrol_operator(app, TERM, "clerk-h", ("統計",))
    clerk.call("cs.op.lock", {}, task="操作者認証", reason="カード抜去")
    with pytest.raises(RemoteError) as locked:
        clerk.call("cs.op.statistics", {}, **STATS)
    assert locked.value.code == "session_locked"
    with pytest.raises(LoginRefused) as stranger:
        _try_login(app, other, person="clerk-h", resume=clerk.session)
    assert stranger.value.code == "not_same_operator"
    resumed = _try_login(app, clerk.card, person="clerk-g", resume=clerk.session)
    assert resumed.session_id == clerk.session.session_id
    again = TestSession(app, TERM, resumed, clerk.card)
    again.call("cs.op.statistics", {}, **STATS)
    # the old session key died with the lock
    with pytest.raises(RemoteError) as stale:
        clerk.call("cs.op.statistics", {}, **STATS)
    assert stale.value.code == "bad_signature"
    again.call("cs.op.logout", {}, task="操作者認証", reason="ログアウト")
    with pytest.raises(RemoteError) as out:
        again.call("cs.op.statistics", {}, **STATS)
    assert out.value.code == "unauthenticated"


def test_an_idle_session_is_locked_by_the_cs(app: Appliance) -> None:
    clerk = open_test_session(app, TERM, "clerk-i", tasks=("統計",))
    clerk.call("cs.op.statistics", {}, **STATS)
    time.sleep(IDLE + 0.5)
    with pytest.raises(RemoteError) as idle:
        clerk.call("cs.op.statistics", {}, **STATS)
    assert idle.value.code == "session_locked"
