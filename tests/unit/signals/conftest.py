"""Compile the kernels once per session before any signals test runs."""

from __future__ import annotations

import pytest

from signals.kernels import warm_up


@pytest.fixture(scope="session", autouse=True)
def _compiled() -> None:
    warm_up()
