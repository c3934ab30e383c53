"""統合端末の組立て (terminal wiring): one factory shared by `juki terminal` and the tests.

Only wiring lives here: the configuration picks the terminal's CS, municipality and policy; the
caller hands in how to reach the CS (``clients``) and, for tests and demos, the clock, the
sensor and the card reader. The CLI is the edge that may import both nodes/ and tui/, so it
passes ``clients`` (nodes.client.client_for) in; tui/ never imports nodes/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from juki.config import ApplianceConfig
from tui.backend import Backend, ClientFactory
from tui.sensor import BiometricSensor, EmulatedSensor
from tui.session import CardReader, PcscCardReader


def build_app(
    config: ApplianceConfig,
    terminal_id: str,
    *,
    clients: ClientFactory,
    clock: Callable[[], float] = time.time,
    sensor: BiometricSensor | None = None,
    card_reader: CardReader | None = None,
    watch_card: bool = True,
) -> Any:
    """The 統合端末 app for ``terminal_id`` (a `tui.shell.TerminalApp`).

    Args:
        clients: makes a fresh RpcClient acting as ``terminal_id`` (one per worker thread).
        clock: seconds since the epoch; drives the idle lock and the status bar clock.
        sensor: the biometric sensor (default: the emulated one).
        card_reader: the operator-card slot (default: PC/SC slot 1).
        watch_card: poll the card reader and lock when the card leaves (off only for
            snapshot tests with a fake reader).
    """
    from tui.shell import TerminalApp  # Textual loads here, never at import of this module

    node = config.node(terminal_id)
    if node.role != "terminal" or node.municipality is None:
        raise ValueError(f"{terminal_id} is not a terminal")
    municipality = config.municipalities[node.municipality]
    backend = Backend(
        clients,
        config.cs_for_municipality(node.municipality),
        terminal_id,
        card_reader if card_reader is not None else PcscCardReader(),
        sensor if sensor is not None else EmulatedSensor(),
    )
    return TerminalApp(
        backend,
        terminal_id=terminal_id,
        municipality=(municipality.code, municipality.name),
        idle_lock_seconds=config.policy.idle_lock_seconds,
        cards_dir=config.var_dir / "cards",
        clock=clock,
        watch_card=watch_card,
    )


def run_terminal(config: ApplianceConfig, terminal_id: str, *, clients: ClientFactory) -> int:
    """`juki terminal`: run the app in this terminal until the operator quits."""
    build_app(config, terminal_id, clients=clients).run()
    return 0
