"""A tier builds its consistency tree off the service loop: the digest question is answered at
once with ``pending`` while a thread of its own (with its own store connection) scans the file,
and the finished tree is the same one a scan on the caller's connection gives — on SQLite and on
PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import peewee
import pytest

from broker.service import HandlerError
from nodes.tiers import DigestSessions
from store import identity
from store.digest import DigestTree, build_tree
from store.records import provided_from
from tests.store.conftest import MakeIdentity, full_identity

SENDAI = "041009"


def _ask(session: str, prefixes: list[str], leaves: bool = False) -> dict[str, Any]:
    return {"session": session, "municipality": SENDAI, "prefixes": prefixes, "leaves": leaves}


def test_the_tree_is_built_on_another_thread_and_answers_once_ready(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    people = [
        full_identity(make_identity, municipality_code=SENDAI, sequence=i + 1) for i in range(25)
    ]
    for p in people:
        identity.save_provided("prefecture", provided_from(p))
    builders: list[str] = []

    def build(tier: str, municipality: str) -> DigestTree:
        builders.append(threading.current_thread().name)
        return build_tree(tier, municipality)

    sessions = DigestSessions("prefecture", build=build)
    first = sessions.answer(_ask("s1", [""]))
    assert first["pending"] > 0 and first["digests"] == [] and first["total"] == 0
    sessions.wait(30)
    answer = sessions.answer(_ask("s1", ["", people[0].resident_code[:2]], leaves=True))
    reference = build_tree("prefecture", SENDAI)  # on this thread's own connection
    assert "pending" not in answer
    assert answer["total"] == len(people) == reference.total
    assert answer["digests"][0] == {"prefix": "", "hash": reference.digest("")[0], "count": 25}
    assert {x["code"] for x in answer["leaves"]} >= {people[0].resident_code}
    assert builders == [f"digest-prefecture-{SENDAI}"]  # once, and not on the caller's thread
    assert threading.current_thread().name not in builders


def test_one_build_per_session_while_it_runs_and_the_loop_is_never_held() -> None:
    release = threading.Event()
    calls: list[str] = []

    def slow_build(tier: str, municipality: str) -> DigestTree:
        calls.append(municipality)
        release.wait(30)
        return DigestTree.build([("04100900001", b"\1" * 32)])

    sessions = DigestSessions("national", build=slow_build)
    for _ in range(5):  # each returns at once although the build is blocked
        assert sessions.answer(_ask("s1", [""]))["pending"] > 0
    assert calls == [SENDAI]
    release.set()
    sessions.wait(30)
    assert sessions.answer(_ask("s1", [""]))["total"] == 1
    # another session (a later check) gets a fresh snapshot
    assert sessions.answer(_ask("s2", [""]))["pending"] > 0
    sessions.wait(30)
    assert calls == [SENDAI, SENDAI]


def test_a_failed_build_is_reported_once_and_the_next_question_retries() -> None:
    attempts: list[int] = []

    def flaky(tier: str, municipality: str) -> DigestTree:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("disk read error")
        return DigestTree.build([])

    sessions = DigestSessions("prefecture", build=flaky)
    assert sessions.answer(_ask("s1", [""]))["pending"] > 0
    sessions.wait(30)
    with pytest.raises(HandlerError) as refused:
        sessions.answer(_ask("s1", [""]))
    assert refused.value.code == "digest_failed" and "disk read error" in refused.value.message
    assert sessions.answer(_ask("s1", [""]))["pending"] > 0  # a new build, not the old error
    sessions.wait(30)
    assert sessions.answer(_ask("s1", [""]))["total"] == 0
    assert len(attempts) == 2
