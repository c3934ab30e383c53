from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodes.appliance import Appliance


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A small seeded appliance, every node its own process, shared by a module's tests."""
    app = Appliance(Path(tmp_path_factory.mktemp("appliance")))
    app.prepare(residents=40)
    app.start()
    try:
        yield app
    finally:
        app.stop()
