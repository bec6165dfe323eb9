from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import actor_processes, xmc  # noqa: E402


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short run dir under /tmp (ipc socket paths are limited to ~100 bytes).

    Teardown stops whatever a test left running and fails if a process survives.
    """
    path = Path(tempfile.mkdtemp(prefix="xmc-", dir="/tmp"))
    yield path
    xmc("down", run_dir=path, timeout=60)
    left = actor_processes(path)
    if not os.environ.get("XMC_KEEP_RUN_DIRS"):  # set it to inspect a failed test's run dir
        shutil.rmtree(path, ignore_errors=True)
    assert not left, f"processes left behind: {left}"
