"""Fixtures of the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from fixpeer import Acceptor
from helpers import started_until_down


@pytest.fixture
def acceptors(run_dir: Path) -> Iterator[Callable[..., Acceptor]]:
    """Start test venues (`Acceptor(specs, version)`); each is stopped after the run is down."""
    yield from started_until_down(run_dir, Acceptor, Acceptor.stop)
