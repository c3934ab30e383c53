"""設定 (appliance configuration): appliance.toml read once, at the edge, into frozen objects.

Unknown keys are errors that name the file and suggest the nearest key, so that a typo in a
policy never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from broker.routes import NodeInfo, Route, RouteTable

ROLES = (
    "municipal_cs",
    "prefecture",
    "national",
    "card_management",
    "existing_registry",
    "terminal",
)
DEFAULT_CONFIG = "appliance.toml"
CONFIG_ENV = "JUKI_CONFIG"


class ConfigError(Exception):
    """appliance.toml is missing, unreadable or wrong. CLI exit code 2."""

    title = "設定エラー"


@dataclass(frozen=True)
class BrokerConfig:
    url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    """AMQP URL of RabbitMQ."""
    exchange: str = "juki"
    """The durable direct exchange every node's queue is bound to (routing key = node id)."""
    dead_letter_exchange: str = "juki.dlx"
    """Where refused and poison messages go, with the reason in their headers."""
    dead_letter_queue: str = "juki.dead"
    """The queue bound to the dead-letter exchange; an operator inspects it."""
    queue_prefix: str = "juki.node."
    """Each node consumes the durable queue <queue_prefix><node id>."""
    queue_type: str = "classic"
    """'classic' or 'quorum' (replicated; what a production cluster would use)."""
    prefetch: int = 256
    """Unacked deliveries per consumer; bounds a node's in-flight batch."""
    max_attempts: int = 5
    """Handler failures before a durable notice is dead-lettered as poison."""
    heartbeat: int = 30
    """AMQP heartbeat seconds; a dead TCP peer is noticed within about twice this."""


@dataclass(frozen=True)
class PolicyConfig:
    clock_skew_seconds: float = 120.0
    """Tolerance for clocks between nodes when checking issued-at and deadline."""
    rpc_timeout_seconds: float = 10.0
    """Default deadline of a request."""
    notice_ttl_seconds: float = 30 * 24 * 3600.0
    """How long a durable notice stays valid after it was sent (its deadline)."""
    inbox_keep_days: float = 90.0
    """How long a node remembers the ids of the notices it applied; a notice made longer ago is
    refused as stale (it could not be told apart from one already applied). At least the
    notice validity plus the clock skew."""
    tokutei_tennyu_purge_days: int = 30
    """特例転入: days a received 転出証明書情報 waits for its 転入 before it is purged."""
    idle_lock_seconds: float = 300.0
    """統合端末: idle time after which personal data is blanked and the session locked."""
    login_failures_before_lockout: int = 5
    """Consecutive failed logins before an operator is locked out."""
    lockout_seconds: float = 900.0
    """How long an operator stays locked out after too many failures."""


@dataclass(frozen=True)
class Prefecture:
    code: str
    name: str


@dataclass(frozen=True)
class Municipality:
    code: str
    name: str
    prefecture: str


@dataclass(frozen=True)
class NodeConfig:
    id: str
    role: str
    municipality: str | None = None
    prefecture: str | None = None
    store: str | None = None
    """peewee database URL; None means the default SQLite file under var/db/."""
    control: str | None = None
    """ZeroMQ control endpoint; None means ipc://var/run/<id>.ctl."""


@dataclass(frozen=True)
class ApplianceConfig:
    path: Path
    name: str
    var_dir: Path
    keys_dir: Path
    trust_file: Path
    passphrase_env: str
    broker: BrokerConfig
    policy: PolicyConfig
    prefectures: Mapping[str, Prefecture]
    municipalities: Mapping[str, Municipality]
    nodes: Mapping[str, NodeConfig]
    routes: tuple[Route, ...] = field(default=())

    def node(self, node_id: str) -> NodeConfig:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no node {node_id!r}{_suggest(node_id, self.nodes)}"
            ) from None

    def nodes_with_role(self, role: str) -> list[NodeConfig]:
        return [n for n in self.nodes.values() if n.role == role]

    def store_url(self, node_id: str) -> str:
        node = self.node(node_id)
        if node.store:
            return node.store
        return f"sqlite:///{self.var_dir / 'db' / (node_id + '.db')}"

    def control_endpoint(self, node_id: str) -> str:
        node = self.node(node_id)
        if node.control:
            return node.control
        return f"ipc://{self.var_dir / 'run' / (node_id + '.ctl')}"

    def node_infos(self) -> dict[str, NodeInfo]:
        return {n.id: _node_info(n, self.municipalities) for n in self.nodes.values()}

    def route_table(self) -> RouteTable:
        return RouteTable(self.routes, self.node_infos())

    def cs_for_municipality(self, municipality: str) -> str:
        for n in self.nodes.values():
            if n.role == "municipal_cs" and n.municipality == municipality:
                return n.id
        raise ConfigError(f"{self.path}: no municipal_cs for municipality {municipality}")

    def prefecture_node(self, prefecture: str) -> str:
        for n in self.nodes.values():
            if n.role == "prefecture" and n.prefecture == prefecture:
                return n.id
        raise ConfigError(f"{self.path}: no prefecture node for prefecture {prefecture}")

    def single(self, role: str) -> str:
        found = self.nodes_with_role(role)
        if len(found) != 1:
            raise ConfigError(f"{self.path}: expected exactly one {role} node, found {len(found)}")
        return found[0].id


def _node_info(n: NodeConfig, municipalities: Mapping[str, Municipality]) -> NodeInfo:
    prefecture = n.prefecture
    if n.municipality and not prefecture:
        prefecture = municipalities[n.municipality].prefecture
    return NodeInfo(node_id=n.id, role=n.role, municipality=n.municipality, prefecture=prefecture)


def _suggest(key: str, candidates: Any) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(where: str, table: Mapping[str, Any], allowed: list[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where}{_suggest(key, allowed)}")


def _build(cls: type, where: str, table: Mapping[str, Any]) -> Any:
    names = [f.name for f in fields(cls)]
    _check_keys(where, table, names)
    try:
        return cls(**table)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))


def load(path: str | os.PathLike[str] | None = None) -> ApplianceConfig:
    """Read appliance.toml (or $JUKI_CONFIG) into an ApplianceConfig."""
    p = Path(path) if path is not None else default_config_path()
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: configuration file not found (set {CONFIG_ENV} or --config)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse(raw, p)


def parse(raw: Mapping[str, Any], path: Path) -> ApplianceConfig:
    top = ["appliance", "broker", "policy", "prefectures", "municipalities", "nodes", "routes"]
    _check_keys(str(path), raw, top)
    base = path.parent.resolve()
    app = dict(raw.get("appliance", {}))
    _check_keys(
        f"{path} [appliance]", app, ["name", "var_dir", "keys_dir", "trust_file", "passphrase_env"]
    )
    var_dir = base / app.get("var_dir", "var")
    keys_dir = base / app.get("keys_dir", "var/keys")
    trust_file = base / app.get("trust_file", "var/keys/trust.json")
    broker = _build(BrokerConfig, f"{path} [broker]", raw.get("broker", {}))
    if broker.queue_type not in ("classic", "quorum"):
        raise ConfigError(f"{path} [broker] queue_type must be 'classic' or 'quorum'")
    policy = _build(PolicyConfig, f"{path} [policy]", raw.get("policy", {}))
    if policy.inbox_keep_days * 86400 < policy.notice_ttl_seconds + policy.clock_skew_seconds:
        raise ConfigError(
            f"{path} [policy] inbox_keep_days must cover notice_ttl_seconds + clock_skew_seconds:"
            " a notice still valid on the wire must still be told apart from an applied one"
        )

    prefectures: dict[str, Prefecture] = {}
    for i, t in enumerate(raw.get("prefectures", [])):
        p = _build(Prefecture, f"{path} [[prefectures]] #{i + 1}", t)
        prefectures[p.code] = p
    municipalities: dict[str, Municipality] = {}
    for i, t in enumerate(raw.get("municipalities", [])):
        m = _build(Municipality, f"{path} [[municipalities]] #{i + 1}", t)
        if m.prefecture not in prefectures:
            raise ConfigError(
                f"{path}: municipality {m.code} names unknown prefecture {m.prefecture}"
            )
        municipalities[m.code] = m
    nodes: dict[str, NodeConfig] = {}
    for i, t in enumerate(raw.get("nodes", [])):
        n = _build(NodeConfig, f"{path} [[nodes]] #{i + 1}", t)
        if n.role not in ROLES:
            raise ConfigError(
                f"{path}: node {n.id} has unknown role {n.role!r}{_suggest(n.role, ROLES)}"
            )
        if n.id in nodes:
            raise ConfigError(f"{path}: node id {n.id} appears twice")
        if n.municipality and n.municipality not in municipalities:
            raise ConfigError(f"{path}: node {n.id} names unknown municipality {n.municipality}")
        if n.prefecture and n.prefecture not in prefectures:
            raise ConfigError(f"{path}: node {n.id} names unknown prefecture {n.prefecture}")
        if n.role in ("municipal_cs", "existing_registry", "terminal") and not n.municipality:
            raise ConfigError(f"{path}: node {n.id} ({n.role}) needs a municipality")
        if n.role == "prefecture" and not n.prefecture:
            raise ConfigError(f"{path}: node {n.id} (prefecture) needs a prefecture")
        nodes[n.id] = n
    routes: list[Route] = []
    for i, t in enumerate(raw.get("routes", [])):
        where = f"{path} [[routes]] #{i + 1}"
        _check_keys(where, t, ["from", "to", "scope", "types"])
        for end in ("from", "to"):
            if t.get(end) not in ROLES:
                raise ConfigError(f"{where}: {end} must be a role, got {t.get(end)!r}")
        try:
            routes.append(Route(t["from"], t["to"], t.get("scope", "any"), tuple(t["types"])))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return ApplianceConfig(
        path=path,
        name=app.get("name", "juki"),
        var_dir=var_dir,
        keys_dir=keys_dir,
        trust_file=trust_file,
        passphrase_env=app.get("passphrase_env", "JUKI_KEY_PASSPHRASE"),
        broker=broker,
        policy=policy,
        prefectures=prefectures,
        municipalities=municipalities,
        nodes=nodes,
        routes=tuple(routes),
    )
