"""bus.readiness over a real inproc socket pair: the drain loops' "is there another frame" check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from bus.readiness import NOBLOCK, POLLIN, readable
from helpers import inproc_pair


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    with inproc_pair(zmq.PULL, zmq.PUSH) as (pull, push):
        yield push, pull


def test_flags_are_plain_ints_with_pyzmqs_values() -> None:
    for flag, enum in ((NOBLOCK, zmq.NOBLOCK), (POLLIN, zmq.POLLIN)):
        assert type(flag) is int and flag == enum


def test_readable_on_an_empty_socket_is_falsy_and_does_not_wait(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    assert not readable(pair[1])()


def test_drain_until_not_readable_takes_every_frame_sent_and_no_more(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    push, pull = pair
    more = readable(pull)
    for i in range(5):
        push.send(b"f%d" % i)
    assert pull.poll(10_000), "the frames never arrived"  # a deadline, not a sleep
    got = []
    while True:
        got.append(pull.recv(NOBLOCK))
        if not more():
            break
    assert got == [b"f%d" % i for i in range(5)]
    with pytest.raises(zmq.Again):
        pull.recv(NOBLOCK)
