"""StepBarrier: a step is complete only when every feed delivered its marker; steps come out in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bus.lockstep import StepBarrier
from bus.messages import Step

FEEDS = ("ingest_a", "ingest_b", "ingest_c")


def step(k: int, venue: str = "X") -> Step:
    return Step(step=k, ts_ns=1_000 + k, venue=venue, fill_qty=0)


def test_step_barrier_step_missing_one_feed_is_not_complete() -> None:
    b = StepBarrier(FEEDS)
    b.on_marker("ingest_a", step(1))
    b.on_marker("ingest_b", step(1))
    assert b.complete() is None
    b.on_marker("ingest_c", step(1))
    assert b.complete() == step(1)


def test_step_barrier_finished_step_and_repeats_of_it_are_forgotten() -> None:
    b = StepBarrier(FEEDS)
    for f in FEEDS:
        b.on_marker(f, step(1))
    b.finish(1)
    assert b.done == 1 and b.complete() is None
    for f in FEEDS:
        assert b.on_marker(f, step(1)) is False  # a re-announcement
    assert b.complete() is None


def test_step_barrier_probe_after_progress_means_simex_restarted_and_resets() -> None:
    b = StepBarrier(FEEDS)
    for f in FEEDS:
        b.on_marker(f, step(5))
    b.finish(5)
    assert b.on_marker("ingest_a", step(0)) is True
    assert b.done == -1
    for f in FEEDS[1:]:
        assert b.on_marker(f, step(0)) is False
    assert b.complete() == step(0)


@settings(max_examples=200, deadline=None)
@given(st.permutations([(f, k) for f in FEEDS for k in range(1, 6)]))
def test_step_barrier_any_arrival_order_yields_steps_in_order_once_complete(arrivals: list[tuple[str, int]]) -> None:
    b = StepBarrier(FEEDS)
    got: list[int] = []
    delivered: dict[int, set[str]] = {}
    for feed, k in arrivals:
        b.on_marker(feed, step(k))
        delivered.setdefault(k, set()).add(feed)
        while (s := b.complete()) is not None:
            assert delivered[s.step] == set(FEEDS)  # never before every feed delivered it
            got.append(s.step)
            b.finish(s.step)
    assert got == sorted(got) and got[-1] == 5
