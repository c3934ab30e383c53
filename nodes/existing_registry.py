"""既存住基システム (the existing registry feeder): the city's 住民基本台帳 and its 異動 feed.

The master register: residents are born, move and die here first, and each 異動 leaves as a
durable CS-1 update to the municipality's CS, written to the outbox in the same transaction as
the register change (so a crash never loses or duplicates one). It also pushes 転出証明書情報
ahead of a move-out (CS-3), asks for 個人番号 (番号法8条) and assigns the number once the CS has
checked 機構's answer, applies 住民票コード変更 and 特例転入 decided at the counter, and records
the CS's refusals for its operators.

Events are driven by the control socket: `juki registry …` for single scripted events and
`juki simulate` for a realistic mix at a steady rate.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import Any

from broker.envelope import Message
from broker.service import Context, HandlerError
from nodes import registry_events as ev
from nodes.env import NodeEnv, RolePart
from nodes.registry_cards import notify_destination
from nodes.registry_tasks import on_correction
from store import register
from store.records import ChangeReason

log = logging.getLogger(__name__)

MIX = (
    ("birth", 0.18),
    ("death", 0.12),
    ("move_within", 0.35),
    ("move_out", 0.15),
    ("correction", 0.05),
    ("number_request", 0.15),
)
"""The simulator's default mix of 異動 (move-ins arrive from the other registries' move-outs)."""

NUMBER_RETRIES = 3
"""Number requests re-sent after a V-11 refusal before the registry's operators must act."""

REMOVAL = {
    "death": ChangeReason.DEATH,
    "move_out": ChangeReason.MOVE_OUT,
    "move_out_abroad": ChangeReason.MOVE_OUT_ABROAD,
}


class Registry:
    """The registry's operations, each one store transaction plus its outgoing notices."""

    def __init__(self, env: NodeEnv) -> None:
        self.env = env
        self.cs = env.cs_of(env.municipality)
        self.muni = env.municipality
        # per thread, for the length of one simulate() transaction: 更新順番号 reserved in one
        # step and the people already read by the sampling (see `batch`)
        self._batch = threading.local()

    @contextmanager
    def batch(self, count: int, people: list[register.RegisterEntry]) -> Iterator[None]:
        """Inside the caller's transaction: reserve `count` 更新順番号 at once and use the
        entries just sampled instead of reading each person again. An entry serves once; a
        person met a second time in the batch is read afresh (an earlier event changed them)."""
        first = register.next_sequence(count)
        self._batch.reserved = list(range(first + count - 1, first - 1, -1))
        self._batch.known = {p.resident_code: p for p in people}
        try:
            yield
        finally:
            self._batch.reserved = []
            self._batch.known = {}

    def _next_sequence(self) -> int:
        reserved = getattr(self._batch, "reserved", None)
        return reserved.pop() if reserved else register.next_sequence()

    def _send_update(self, send: Any, update: dict[str, Any]) -> None:
        send(self.cs, "cs.registry.identity_update", {"update": update})

    def _person(self, code: str, status: str = "current") -> register.RegisterEntry:
        known = getattr(self._batch, "known", None)
        entry = known.pop(code, None) if known else None
        if entry is None:
            entry = register.get(code)
        if entry is None or entry.status != status:
            raise LookupError(f"no {status} resident {code} in registry {self.muni}")
        return entry

    # each method runs inside a transaction and sends through `send(recipient, type, body)`

    def birth(self, send: Any, on: date, rng: random.Random, parent_code: str | None = None) -> str:
        parent = register.get(parent_code) if parent_code else None
        code = register.take_code()
        seq = self._next_sequence()
        person, update = ev.birth(code, self.muni, on, seq, rng, parent.record if parent else None)
        register.put(code, person, "current", parent.household if parent else f"H{code}")
        self._send_update(send, update)
        return code

    def remove(self, send: Any, code: str, reason: ChangeReason, on: date) -> str:
        entry = self._person(code)
        seq = self._next_sequence()
        register.put(code, entry.record, "removed", entry.household)
        self._send_update(send, ev.removal(entry.record, reason, on, seq))
        return code

    def move_within(self, send: Any, code: str, on: date, rng: random.Random) -> str:
        entry = self._person(code)
        person, update = ev.move_within(entry.record, on, self._next_sequence(), rng)
        register.put(code, person, "current", entry.household)
        self._send_update(send, update)
        return code

    def move_out(self, send: Any, code: str, to_municipality: str, on: date) -> dict[str, Any]:
        """転出: the removal, and the 転出証明書情報 pushed ahead to the destination (CS-3)."""
        entry = self._person(code)
        seq = self._next_sequence()
        register.put(code, entry.record, "removed", entry.household)
        self._send_update(send, ev.removal(entry.record, ChangeReason.MOVE_OUT, on, seq))
        certificate = {k: v for k, v in entry.record.items() if v is not None}
        if to_municipality in self.env.config.municipalities and to_municipality != self.muni:
            send(
                self.cs,
                "cs.registry.moveout_certificate",
                {
                    "resident_code": code,
                    "to_municipality": to_municipality,
                    "planned_on": on.isoformat(),
                    "record": certificate,
                },
            )
        return certificate

    def move_in(
        self,
        send: Any,
        record: Mapping[str, Any],
        from_municipality: str | None,
        on: date,
        rng: random.Random,
        new_address: str | None = None,
    ) -> str:
        existing = register.get(record["resident_code"])
        if existing is not None and existing.status == "current":
            raise ValueError(f"{record['resident_code']} is already a resident here")
        person, update = ev.move_in(
            dict(record),
            self.muni,
            from_municipality,
            on,
            self._next_sequence(),
            rng,
            new_address,
        )
        register.put(person["resident_code"], person, "current", f"H{person['resident_code']}")
        self._send_update(send, update)
        return str(person["resident_code"])

    def correction(self, send: Any, code: str, on: date) -> str:
        entry = self._person(code)
        person, update = ev.correction(entry.record, on, self._next_sequence())
        register.put(code, person, "current", entry.household)
        self._send_update(send, update)
        return code

    def number_request(self, send: Any, code: str) -> str:
        entry = self._person(code)
        if entry.record.get("individual_number"):
            raise ValueError(f"{code} already has a 個人番号")
        send(
            self.cs,
            "cs.registry.number_request",
            {"resident_code": code, "request_number": f"N{self.muni}-{self._next_sequence()}"},
        )
        return code

    def assign_number(self, send: Any, code: str, number: str, on: date) -> str:
        """個人番号指定, then the 送付先情報 for 機構's 個人番号通知書 (CS-7) — after the update, on
        the same outbox and queue, so the CS holds the number before it checks the 送付先."""
        entry = self._person(code)
        seq = self._next_sequence()
        person, update = ev.number_assignment(entry.record, number, on, seq)
        register.put(code, person, "current", entry.household)
        self._send_update(send, update)
        notify_destination(
            send,
            self.cs,
            person,
            self.muni,
            municipality_name=self.env.config.municipalities[self.muni].name,
            sequence=seq,
            on=on,
        )
        return code

    def change_code(self, send: Any, old: str, new: str, on: date) -> str:
        entry = self._person(old)
        person, update = ev.code_change(entry.record, new, on, self._next_sequence())
        register.rekey(old, new)
        register.put(new, person, "current", entry.household)
        self._send_update(send, update)
        return new


def build(env: NodeEnv) -> RolePart:
    reg = Registry(env)

    # ---------------------------------------------------------------- answers from the CS

    def on_update_result(msg: Message, ctx: Context) -> None:
        b = msg.body
        if not b["ok"]:
            register.record_refusal(
                b["request_number"], b["resident_code"], "update", b["violations"]
            )
            log.warning(
                "%s: CS refused %s: %s",
                env.node_id,
                b["request_number"],
                ",".join(v["rule"] for v in b["violations"]),
            )

    def on_number_result(msg: Message, ctx: Context) -> None:
        b = msg.body
        if not b["ok"]:
            register.record_refusal(
                b["request_number"], b["resident_code"], "number", b["violations"]
            )
            # V-11 alone is usually a race: a 転居 that had not reached national when it
            # answered, so its 4情報 differed from the CS's. Ask again (a few times at most);
            # a real mismatch stays refused and on record for the registry's operators.
            entry = register.get(b["resident_code"])
            rules = {v["rule"] for v in b["violations"]}
            if (
                rules == {"V-11"}
                and entry is not None
                and entry.status == "current"
                and not entry.record.get("individual_number")
                and register.refusal_count(b["resident_code"], "number") <= NUMBER_RETRIES
            ):
                reg.number_request(ctx.send, b["resident_code"])
            return
        entry = register.get(b["resident_code"])
        if entry is None or entry.status != "current" or entry.record.get("individual_number"):
            return  # removed meanwhile, or already numbered by an earlier answer
        reg.assign_number(ctx.send, b["resident_code"], b["individual_number"], env.today())

    def on_movein_notice(msg: Message, ctx: Context) -> None:
        b = msg.body
        entry = register.get(b["resident_code"])
        if entry is None:
            raise HandlerError("unknown", f"no person {b['resident_code']} in this register")
        record = {**entry.record, "moved_to": b["to_municipality"], "moved_in_on": b["moved_in_on"]}
        register.put(entry.resident_code, record, "moved_out", entry.household)

    def on_tokurei_movein(msg: Message, ctx: Context) -> None:
        b = msg.body
        reg.move_in(
            ctx.send,
            b["record"],
            b["from_municipality"],
            date.fromisoformat(b["moved_in_on"]),
            env.rng,
            new_address=b["new_address"],
        )

    def on_code_change(msg: Message, ctx: Context) -> None:
        b = msg.body
        reg.change_code(ctx.send, b["old_resident_code"], b["new_resident_code"], env.today())

    # ---------------------------------------------------------------- control commands

    def run_event(req: Mapping[str, Any]) -> dict[str, Any]:
        kind = req.get("kind")
        on = date.fromisoformat(req["on"]) if req.get("on") else env.today()
        rng = random.Random(req.get("seed")) if req.get("seed") is not None else env.rng
        code = req.get("resident_code")
        result: dict[str, Any] = {"kind": kind}
        with env.atomic():
            if kind == "birth":
                result["resident_code"] = reg.birth(env.send, on, rng, req.get("parent"))
            elif kind in REMOVAL and kind != "move_out":
                result["resident_code"] = reg.remove(env.send, code, REMOVAL[kind], on)
            elif kind == "move_out":
                result["certificate"] = reg.move_out(env.send, code, req["to_municipality"], on)
                result["resident_code"] = code
            elif kind == "move_within":
                result["resident_code"] = reg.move_within(env.send, code, on, rng)
            elif kind == "move_in":
                result["resident_code"] = reg.move_in(
                    env.send,
                    req["record"],
                    req.get("from_municipality"),
                    on,
                    rng,
                    req.get("new_address"),
                )
            elif kind == "correction":
                result["resident_code"] = reg.correction(env.send, code, on)
            elif kind == "number_request":
                result["resident_code"] = reg.number_request(env.send, code)
            else:
                raise ValueError(f"unknown event kind {kind!r}")
        env.wake()
        return result

    def simulate(req: Mapping[str, Any]) -> dict[str, Any]:
        """`count` random 異動 in one transaction; cross-municipality move-outs are returned so
        the driver can make those people arrive at their destination registry."""
        count = int(req.get("count", 1))
        rng = random.Random(req.get("seed"))
        others = [m for m in env.config.municipalities if m != env.municipality]
        mix = req.get("mix") or dict(MIX)
        unknown = set(mix) - {k for k, _ in MIX}
        if unknown:
            raise ValueError(f"unknown 異動 kinds in mix: {sorted(unknown)}")
        kinds, weights = zip(*mix.items(), strict=True)
        done: Counter[str] = Counter()
        moves: list[dict[str, Any]] = []
        on = env.today()
        with env.atomic():
            candidates = register.sample_current(rng, max(1, count))
            with reg.batch(count, candidates):
                for i in range(count):
                    kind = rng.choices(kinds, weights)[0]
                    person = candidates[i % len(candidates)] if candidates else None
                    try:
                        if kind == "birth" or person is None:
                            reg.birth(env.send, on, rng, person.resident_code if person else None)
                            kind = "birth"
                        elif kind == "death":
                            reg.remove(env.send, person.resident_code, ChangeReason.DEATH, on)
                        elif kind == "move_within":
                            reg.move_within(env.send, person.resident_code, on, rng)
                        elif kind == "move_out":
                            target = rng.choice(others)
                            cert = reg.move_out(env.send, person.resident_code, target, on)
                            moves.append({"to": target, "from": env.municipality, "record": cert})
                        elif kind == "correction":
                            reg.correction(env.send, person.resident_code, on)
                        elif kind == "number_request":
                            if person.record.get("individual_number"):
                                reg.correction(env.send, person.resident_code, on)
                                kind = "correction"
                            else:
                                reg.number_request(env.send, person.resident_code)
                    except LookupError:
                        kind = "skipped"  # the sampled person changed earlier in this batch
                    done[kind] += 1
        env.wake()
        return {"done": dict(done), "moves": moves}

    def status(req: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "current": register.count("current"),
            "removed": register.count("removed"),
            "moved_out": register.count("moved_out"),
            "codes_left": register.codes_left(),
            "refusals": register.refusals(int(req.get("limit", 20))),
        }

    return RolePart(
        handlers={
            "registry.cs.update_result": on_update_result,
            "registry.cs.number_result": on_number_result,
            "registry.cs.movein_notice": on_movein_notice,
            "registry.cs.tokurei_movein": on_tokurei_movein,
            "registry.cs.code_change": on_code_change,
            "registry.cs.correction": lambda m, c: on_correction(reg, m, c, env),
        },
        commands={
            "registry.event": run_event,
            "registry.simulate": simulate,
            "registry.status": status,
        },
    )


__all__ = ["Registry", "build"]
