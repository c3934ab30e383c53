"""経路表 (route table): who may send which message type to whom.

The seed's rules about who talks to whom (「入手元を既存住基システムに限定する」, terminals only
to their own CS, CS only to its own prefecture) become data in appliance.toml; this module only
evaluates them. Pure functions, no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from broker.schema import BUNDLE

SCOPES = ("any", "same_municipality", "same_prefecture", "other_municipality")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the route table needs to know about one node."""

    node_id: str
    role: str
    municipality: str | None = None
    prefecture: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """One allowed direction: requests and notices of `types` from role `sender` to `recipient`."""

    sender: str
    recipient: str
    scope: str
    types: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"unknown route scope {self.scope!r}; expected one of {SCOPES}")

    def matches_type(self, message_type: str) -> bool:
        return any(fnmatch.fnmatchcase(message_type, pattern) for pattern in self.types)


class RouteTable:
    """Evaluates the route table against the node directory."""

    def __init__(self, routes: Iterable[Route], nodes: Mapping[str, NodeInfo]) -> None:
        self._routes = tuple(routes)
        self._nodes = dict(nodes)
        # The table and directory never change after construction, so every answer is final:
        # remembered per (sender, recipient, type, kind), since fnmatch on every message is the
        # route check's whole cost. Bounded, because `type` comes from (signed) input.
        self._memo: dict[tuple[str, str, str, str], bool] = {}

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    def node(self, node_id: str) -> NodeInfo | None:
        return self._nodes.get(node_id)

    def allows(self, sender: str, recipient: str, message_type: str, kind: str) -> bool:
        """True when `sender` may send `message_type` of `kind` to `recipient`.

        A reply travels back along the request's route, so it is allowed exactly when the
        request it answers would be allowed the other way. A `bundle` (notice) is allowed
        wherever some route links the two nodes; each item inside it is then checked against
        this table on its own type (broker/bundle.py), so a bundle cannot widen a route.
        """
        key = (sender, recipient, message_type, kind)
        answer = self._memo.get(key)
        if answer is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            answer = self._memo[key] = self._evaluate(sender, recipient, message_type, kind)
        return answer

    def _evaluate(self, sender: str, recipient: str, message_type: str, kind: str) -> bool:
        if kind == "reply":
            sender, recipient = recipient, sender
        src = self._nodes.get(sender)
        dst = self._nodes.get(recipient)
        if src is None or dst is None:
            return False
        for route in self._routes:
            if route.sender != src.role or route.recipient != dst.role:
                continue
            if not _scope_holds(route.scope, src, dst):
                continue
            if (message_type == BUNDLE and kind == "notice") or route.matches_type(message_type):
                return True
        return False


_MEMO_MAX = 65536


def _scope_holds(scope: str, src: NodeInfo, dst: NodeInfo) -> bool:
    if scope == "any":
        return True
    if scope == "same_municipality":
        return src.municipality is not None and src.municipality == dst.municipality
    if scope == "same_prefecture":
        return src.prefecture is not None and src.prefecture == dst.prefecture
    if scope == "other_municipality":
        return (
            src.municipality is not None
            and dst.municipality is not None
            and src.municipality != dst.municipality
        )
    return False
