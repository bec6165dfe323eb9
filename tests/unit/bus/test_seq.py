"""Sequence tracking per (publisher, topic): gaps, duplicates, restarts."""

from __future__ import annotations

from hypothesis import given, strategies as st

from bus.messages import CmdAck, Envelope
from bus.pubsub import Inbound, SeqStatus, SeqTracker


def env(seq: int, epoch: int = 1, src: str = "p") -> Envelope:
    return Envelope(src=src, epoch=epoch, seq=seq, ts_ns=0, body=CmdAck(ok=True))


def test_in_order_frames_are_ok_after_the_first() -> None:
    t = SeqTracker()
    assert t.check("a", env(1))[0] is SeqStatus.FIRST
    assert t.check("a", env(2))[0] is SeqStatus.OK
    assert t.gaps == 0 and t.dups == 0


def test_skipped_seq_is_a_gap_naming_the_first_missing() -> None:
    t = SeqTracker()
    t.check("a", env(1))
    status, first = t.check("a", env(5))
    assert status is SeqStatus.GAP and first == 2 and t.gaps == 3


def test_repeated_seq_is_a_duplicate() -> None:
    t = SeqTracker()
    t.check("a", env(1))
    t.check("a", env(2))
    assert t.check("a", env(2))[0] is SeqStatus.DUP and t.dups == 1


def test_new_epoch_is_a_restart_not_a_gap() -> None:
    t = SeqTracker()
    t.check("a", env(10))
    assert t.check("a", env(1, epoch=2))[0] is SeqStatus.RESTART
    assert t.gaps == 0


def test_new_epoch_seen_from_seq_3_is_a_gap_from_1() -> None:
    t = SeqTracker()
    t.check("a", env(10))
    assert t.check("a", env(3, epoch=2)) == (SeqStatus.GAP, 1)
    assert t.gaps == 2


def test_topics_and_sources_are_tracked_separately() -> None:
    t = SeqTracker()
    t.check("a", env(1))
    t.check("b", env(1))
    t.check("a", env(1, src="q"))
    assert t.check("b", env(2))[0] is SeqStatus.OK and t.gaps == 0


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=60))
def test_gaps_count_exactly_the_missing_numbers_of_an_increasing_stream(seqs: list[int]) -> None:
    stream = sorted(set(seqs))
    t = SeqTracker()
    for s in stream:
        t.check("a", env(s))
    assert t.gaps == (stream[-1] - stream[0] + 1) - len(stream)


def test_bad_frames_are_counted_and_reported_once_per_source() -> None:
    reports: list[tuple[str, str, int]] = []
    inbound = Inbound("t", lambda src, why, n: reports.append((src, why, n)))
    for _ in range(5):
        assert inbound.decode(b"md.x|garbage") is None
    assert inbound.decode(b"other|junk") is None
    assert inbound.decode_errors == 6
    assert [r[0] for r in reports] == ["t:md.x", "t:other"]
