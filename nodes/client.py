"""呼出し側 (callers without a node): the CLI and the terminal talk to nodes through this.

A caller acts as one identity of the topology (a terminal, or a node's identity for tools) and
sends sealed requests over its own RpcClient; pika connections never cross threads, so each
thread that calls builds its own client.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any
from urllib.parse import urlparse

from broker.errors import BrokerUnavailable
from broker.keys import TrustStore, load_identity
from broker.rpc import RpcClient
from juki.config import ApplianceConfig
from nodes import messages


def check_broker(config: ApplianceConfig, timeout: float = 3.0) -> None:
    """Fail with a clear BrokerUnavailable (exit code 3) when RabbitMQ does not answer."""
    u = urlparse(config.broker.url)
    host, port = u.hostname or "127.0.0.1", u.port or 5672
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise BrokerUnavailable(
            f"RabbitMQ is not answering on {host}:{port} ({exc.strerror or exc}). "
            "Start it with `sudo rabbitmq-server -detached` (or scripts/bootstrap run)."
        ) from None


def client_for(
    config: ApplianceConfig, identity_id: str, *, timeout: float | None = None
) -> RpcClient:
    from nodes.runtime import topology_for

    passphrase = os.environ.get(config.passphrase_env)
    identity = load_identity(
        config.keys_dir, identity_id, passphrase.encode() if passphrase else None
    )
    return RpcClient(
        identity_id,
        identity,
        TrustStore.load(config.trust_file),
        config.route_table(),
        messages.registry(),
        config.broker.url,
        topology_for(config),
        default_timeout=timeout or config.policy.rpc_timeout_seconds,
        skew_seconds=config.policy.clock_skew_seconds,
    )


def ping(
    config: ApplianceConfig, sender: str, recipient: str, timeout: float = 5.0
) -> tuple[dict[str, Any], float]:
    check_broker(config)
    with client_for(config, sender) as client:
        start = time.perf_counter()
        answer = client.call(recipient, "ping", {}, timeout)
        return answer, time.perf_counter() - start
