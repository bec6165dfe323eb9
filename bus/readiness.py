"""Whether a socket has a frame to read, at the least cost: the check every drain loop makes.

pyzmq's constants are enum members: `events & zmq.POLLIN` builds a `PollEvent` through
enum.py's Python code, and `getsockopt(zmq.EVENTS)` builds a `SocketOption` the same way,
on every frame of the tick's path. A read past the last frame raises `zmq.Again`, which costs
most of all. On this VM, with the caches cold as a mostly idle actor's are (a throwaway
microbenchmark, median of 300 cold calls): read past the end 59 µs, `getsockopt(EVENTS) &
POLLIN` 29 µs with the enums and 19 with ints, a one-socket `zmq_poll` with no wait 16.
"""

from __future__ import annotations

from typing import Callable

import zmq

NOBLOCK: int = int(zmq.NOBLOCK)
POLLIN: int = int(zmq.POLLIN)


def readable(sock: zmq.Socket) -> Callable[[], list[tuple[zmq.Socket, int]]]:
    """A check, for a drain loop, whether `sock` holds a whole message to read now (never
    waits): a non-empty list if so."""
    items, poll = [(sock, POLLIN)], zmq.zmq_poll
    return lambda: poll(items, 0)
