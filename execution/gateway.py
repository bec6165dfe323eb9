"""The venue order gateway interface, and the simulated venue's implementation.

A gateway is one venue's order session: orders, cancels and status queries go
out; execution reports come back asynchronously to the sink the executor gave
it. A real FIX session (QuickFIX) fits the same shape: `send` is
NewOrderSingle, `cancel` OrderCancelRequest, `status` OrderStatusRequest, and
ExecutionReports arrive through the sink; `connected` follows logon/logout.
"""

from __future__ import annotations

from typing import Callable, Protocol

from bus.messages import CancelRequest, Message, OrderRequest, StatusRequest


class OrderGateway(Protocol):
    venue: str

    @property
    def connected(self) -> bool: ...

    def send(self, order: OrderRequest) -> None: ...

    def cancel(self, req: CancelRequest) -> None: ...

    def status(self, req: StatusRequest) -> None: ...


class SimGateway:
    """Order session with the embedded simulated venue over the bus command channel.

    `transmit` hands a request to the command channel (a DEALER to the simex
    actor); reports come back on that channel and are routed by the executor.
    The session itself never drops a request: loss and disconnects are the
    simulated venue's behaviour, visible as missing or SESSION_DOWN reports.
    """

    def __init__(self, venue: str, transmit: Callable[[Message], object]) -> None:
        self.venue = venue
        self._transmit = transmit
        self.sent = 0

    @property
    def connected(self) -> bool:
        return True

    def send(self, order: OrderRequest) -> None:
        self.sent += 1
        self._transmit(order)

    def cancel(self, req: CancelRequest) -> None:
        self._transmit(req)

    def status(self, req: StatusRequest) -> None:
        self._transmit(req)
