"""異動の模擬 (simulated 異動): drives the existing registries at a steady rate for demos and load.

The driver only talks to the registry daemons over their control sockets: each tick asks one
registry for a batch of random 異動 (births, deaths, moves within, move-outs, corrections,
number requests), and makes the people who moved out to another municipality of the appliance
arrive there a little later, as a 転入 at that registry — after their 転出証明書情報 has had time
to reach the destination CS, so 特例転入 matching and the 転入通知 back happen as in life.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.control import control_request
from juki.config import ApplianceConfig

TICK = 0.1
ARRIVAL_DELAY = 2.0


@dataclass
class SimulationReport:
    municipality: str
    seconds: float = 0.0
    events: Counter[str] = field(default_factory=Counter)
    arrivals: int = 0
    arrival_failures: int = 0

    @property
    def total(self) -> int:
        return sum(v for k, v in self.events.items() if k != "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {
            "municipality": self.municipality,
            "seconds": round(self.seconds, 2),
            "events": dict(self.events),
            "total": self.total,
            "rate": round(self.total / self.seconds, 1) if self.seconds else 0.0,
            "arrivals": self.arrivals,
            "arrival_failures": self.arrival_failures,
        }


def simulate(
    config: ApplianceConfig,
    municipality: str,
    rate: float,
    duration: float,
    *,
    seed: int | None = None,
    mix: dict[str, float] | None = None,
    progress: Callable[[SimulationReport], None] | None = None,
) -> SimulationReport:
    registry = f"registry.{municipality}"
    config.node(registry)
    endpoint = config.control_endpoint(registry)
    rng = random.Random(seed)
    report = SimulationReport(municipality)
    arrivals: list[tuple[float, dict[str, Any]]] = []
    start = time.monotonic()
    owed = 0.0
    next_tick = start
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        owed += rate * TICK
        count = int(owed)
        if count:
            owed -= count
            answer = control_request(
                endpoint,
                "registry.simulate",
                timeout=30.0,
                count=count,
                seed=rng.getrandbits(32),
                mix=mix or {},
            )
            if not answer.get("ok"):
                raise RuntimeError(f"{registry}: {answer.get('error')}")
            report.events.update(answer["done"])
            arrivals += [(now + ARRIVAL_DELAY, m) for m in answer["moves"]]
        due = [a for a in arrivals if a[0] <= now]
        arrivals = [a for a in arrivals if a[0] > now]
        for _, move in due:
            _arrive(config, move, report)
        if progress:
            report.seconds = time.monotonic() - start
            progress(report)
        next_tick += TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))
    for when, move in arrivals:  # the last movers still arrive
        time.sleep(max(0.0, when - time.monotonic()))
        _arrive(config, move, report)
    report.seconds = time.monotonic() - start
    return report


def _arrive(config: ApplianceConfig, move: dict[str, Any], report: SimulationReport) -> None:
    answer = control_request(
        config.control_endpoint(f"registry.{move['to']}"),
        "registry.event",
        timeout=30.0,
        kind="move_in",
        record=move["record"],
        from_municipality=move["from"],
    )
    if answer.get("ok"):
        report.arrivals += 1
    else:
        report.arrival_failures += 1
