"""ノード環境 (node environment): what a role's handlers know about the appliance around them.

Handlers are plain functions of (message, ctx); the role module closes them over a NodeEnv so
that they can name their upstream (the CS's prefecture, the registry's CS) without reading
configuration themselves.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from juki.config import ApplianceConfig, NodeConfig


@dataclass
class NodeEnv:
    config: ApplianceConfig
    node_id: str
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.SystemRandom)
    outbox: Callable[[str, str, dict[str, Any]], str] | None = None
    """Set by the runtime: write a notice to the outbox outside a handler (control commands),
    checked against the route table and the schema like `ctx.send`."""
    atomic: Callable[[], AbstractContextManager[Any]] = nullcontext
    """Set by the runtime: one store transaction, for work done outside the service loop."""
    wake: Callable[[], None] = lambda: None
    """Set by the runtime: nudge the outbox relay after work done outside the service loop."""

    def send(self, recipient: str, type: str, body: dict[str, Any]) -> str:
        if self.outbox is None:
            raise RuntimeError(f"{self.node_id}: no outbox wired")
        return self.outbox(recipient, type, body)

    @property
    def node(self) -> NodeConfig:
        return self.config.node(self.node_id)

    @property
    def municipality(self) -> str:
        m = self.node.municipality
        if m is None:
            raise ValueError(f"{self.node_id} has no municipality")
        return m

    @property
    def prefecture(self) -> str:
        n = self.node
        if n.prefecture:
            return n.prefecture
        return self.config.municipalities[self.municipality].prefecture

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def today(self) -> date:
        # 異動年月日 and business days are Japanese calendar dates
        return datetime.fromtimestamp(self.clock() + 9 * 3600, UTC).date()

    # -- who is where -------------------------------------------------------------------------

    def cs_of(self, municipality: str) -> str:
        return self.config.cs_for_municipality(municipality)

    def registry_of(self, municipality: str) -> str:
        for n in self.config.nodes.values():
            if n.role == "existing_registry" and n.municipality == municipality:
                return n.id
        raise LookupError(f"no existing_registry for {municipality}")

    def prefecture_node(self, prefecture: str | None = None) -> str:
        return self.config.prefecture_node(prefecture or self.prefecture)

    def prefecture_of_municipality(self, municipality: str) -> str:
        return self.config.municipalities[municipality].prefecture

    @property
    def national(self) -> str:
        return self.config.single("national")

    @property
    def cardmgmt(self) -> str:
        return self.config.single("card_management")


@dataclass
class RolePart:
    """What a role module contributes to its node: message handlers, control commands
    (`juki ctl`-style requests on the node's ZeroMQ socket) and periodic jobs."""

    handlers: dict = field(default_factory=dict)
    commands: dict = field(default_factory=dict)
    jobs: list = field(default_factory=list)
