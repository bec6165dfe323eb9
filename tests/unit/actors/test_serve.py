"""The loop's dispatch of one wake-up (`Actor._serve`): hot sockets and `after_hot` first, with
the garbage collector held off until the tick's path is done."""

from __future__ import annotations

import gc
from typing import Any, Callable

import pytest

from actors.runtime import Actor


class Loop:
    """What `_serve` uses of an actor, each call noting whether the collector was on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._handlers: dict[str, Callable[[], None]] = {s: self._note(s) for s in ("md", "sig", "risk", "cmd")}
        self.after_hot = self._note("after_hot")
        self.after_drain = self._note("after_drain")

    def _note(self, what: str) -> Callable[[], None]:
        return lambda: self.seen.append((what, gc.isenabled()))

    def _guarded(self, fn: Callable[[], None]) -> None:
        fn()

    def serve(self, *ready: str) -> None:
        Actor._serve(self, [(s, 1) for s in ready], {"md", "sig"})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def collector_on() -> Any:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_hot_sockets_run_first_without_collection_then_the_rest_with_it() -> None:
    loop = Loop()
    loop.serve("md", "sig", "risk", "cmd")
    assert loop.seen == [("md", False), ("sig", False), ("after_hot", False), ("risk", True), ("cmd", True),
                         ("after_drain", True)]
    assert gc.isenabled()


def test_a_wake_up_without_a_hot_socket_never_holds_the_collector() -> None:
    loop = Loop()
    loop.serve("risk")
    assert loop.seen == [("risk", True), ("after_drain", True)]


def test_a_hot_handler_that_stops_the_process_leaves_the_collector_on() -> None:
    loop = Loop()

    def fatal() -> None:
        raise SystemExit(1)

    loop._handlers["md"] = fatal
    with pytest.raises(SystemExit):
        loop.serve("md", "risk")
    assert gc.isenabled()


def test_a_collector_the_process_turned_off_stays_off() -> None:
    loop = Loop()
    gc.disable()
    loop.serve("sig")
    assert loop.seen == [("sig", False), ("after_hot", False), ("after_drain", False)]
    assert not gc.isenabled()
