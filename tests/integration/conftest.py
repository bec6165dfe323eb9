"""Fixtures of the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from feeds.fix.session import SessionSpec
from fixpeer import Acceptor
from helpers import xmc


@pytest.fixture
def acceptors(run_dir: Path) -> Iterator[Callable[..., Acceptor]]:
    """Start test venues; at the end the executor goes first (stopping an acceptor whose session is
    logged on waits for the logout), then every venue."""
    made: list[Acceptor] = []

    def make(specs: list[SessionSpec], version: str) -> Acceptor:
        a = Acceptor(specs, version)
        made.append(a)
        return a

    try:
        yield make
    finally:
        xmc("down", run_dir=run_dir, timeout=60)
        for a in made:
            a.stop()
