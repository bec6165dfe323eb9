"""Order state and matching of one simulated order against a top of book.

The simulated book is the venue's latest `TopOfBook` per instrument; our
orders are not added to it. An incoming (or marketable) order takes the
opposite touch at the book's price, up to the size still shown at that
quote (what earlier orders took from the same quote is gone until the next
quote). A resting DAY order fills, at its own limit price, when a later
quote's opposite touch reaches it.
"""

from __future__ import annotations

import enum
import math

from bus.messages import OrderRequest, Side, TimeInForce
from feeds.book import TopOfBook


class OrderState(str, enum.Enum):
    PENDING_NEW = "PENDING_NEW"  # received, not yet acknowledged
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def working(self) -> bool:
        return self in (OrderState.NEW, OrderState.PARTIALLY_FILLED)


_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})


class OrderTransition(str, enum.Enum):
    ACK = "ACK"
    REJECT = "REJECT"
    PARTIAL_FILL = "PARTIAL_FILL"
    FILL = "FILL"
    CANCEL = "CANCEL"  # on request, or an IOC remainder expiring


_S = OrderState
_T = OrderTransition
_NEXT: dict[tuple[OrderState, OrderTransition], OrderState] = {
    (_S.PENDING_NEW, _T.ACK): _S.NEW,
    (_S.PENDING_NEW, _T.REJECT): _S.REJECTED,
    (_S.PENDING_NEW, _T.CANCEL): _S.CANCELLED,
    (_S.NEW, _T.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.NEW, _T.FILL): _S.FILLED,
    (_S.NEW, _T.CANCEL): _S.CANCELLED,
    (_S.PARTIALLY_FILLED, _T.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _T.FILL): _S.FILLED,
    (_S.PARTIALLY_FILLED, _T.CANCEL): _S.CANCELLED,
}


class IllegalTransition(RuntimeError):
    """A transition the order state machine does not allow (a venue bug, never an input error)."""


class SimOrder:
    """One order as the venue holds it (mutable venue-side state)."""

    __slots__ = (
        "req", "venue_order_id", "state", "cum_qty", "notional", "dropped", "partial_cap", "u_reject",
        "received_ns", "seq",
    )

    def __init__(self, req: OrderRequest, venue_order_id: str, received_ns: int, seq: int, *, dropped: bool,
                 partial_cap: int | None, u_reject: float) -> None:
        self.req = req
        self.venue_order_id = venue_order_id
        self.state = OrderState.PENDING_NEW
        self.cum_qty = 0
        self.notional = 0.0
        self.dropped = dropped  # its unsolicited reports are lost; it still lives on the venue
        self.partial_cap = partial_cap  # forced partial: most the first match may fill
        self.u_reject = u_reject
        self.received_ns = received_ns
        self.seq = seq  # time priority among resting orders

    @property
    def leaves_qty(self) -> int:
        return 0 if self.state.terminal else self.req.qty - self.cum_qty

    @property
    def avg_px(self) -> float:
        return self.notional / self.cum_qty if self.cum_qty else 0.0

    def apply(self, transition: OrderTransition) -> OrderState:
        nxt = _NEXT.get((self.state, transition))
        if nxt is None:
            raise IllegalTransition(f"ORDER_TRANSITION_ILLEGAL: state={self.state.value} transition={transition.value}")
        self.state = nxt
        return nxt

    def fill(self, qty: int, px: float) -> None:
        self.cum_qty += qty
        self.notional += qty * px
        self.apply(OrderTransition.FILL if self.cum_qty >= self.req.qty else OrderTransition.PARTIAL_FILL)


class BookState:
    """Latest top of book of one instrument plus what our orders already took from it."""

    __slots__ = ("tob", "bid_left", "ask_left")

    def __init__(self, tob: TopOfBook) -> None:
        self.tob = tob
        self.bid_left = int(tob.bid_size)
        self.ask_left = int(tob.ask_size)

    def touch(self, side: Side) -> tuple[float, int]:
        """Price and size an order of `side` can take (the opposite touch)."""
        if side is Side.BUY:
            return self.tob.ask, self.ask_left
        return self.tob.bid, self.bid_left

    def take(self, side: Side, qty: int) -> None:
        if side is Side.BUY:
            self.ask_left -= qty
        else:
            self.bid_left -= qty


def crosses(side: Side, limit: float | None, px: float) -> bool:
    """True if an order of `side` with `limit` (None: market) trades at book price `px`."""
    if limit is None:
        return True
    eps = 1e-9 * max(1.0, abs(px))
    return px <= limit + eps if side is Side.BUY else px >= limit - eps


def match_incoming(order: SimOrder, book: BookState | None) -> tuple[int, float]:
    """(qty, price) the order fills on arrival at the matching engine; (0, 0.0) if none.

    Applies the order's forced-partial cap; takes the size from `book`.
    """
    if book is None:
        return 0, 0.0
    side = order.req.side
    px, size = book.touch(side)
    if size <= 0 or not crosses(side, order.req.price, px):
        return 0, 0.0
    qty = min(order.leaves_qty, size)
    if order.partial_cap is not None:
        qty = min(qty, order.partial_cap)
    if qty <= 0:
        return 0, 0.0
    book.take(side, qty)
    return qty, px


def match_resting(order: SimOrder, book: BookState) -> tuple[int, float]:
    """(qty, price) a resting order fills against a new quote: at its limit (market: the touch)."""
    side = order.req.side
    px, size = book.touch(side)
    if size <= 0 or not crosses(side, order.req.price, px):
        return 0, 0.0
    qty = min(order.leaves_qty, size)
    book.take(side, qty)
    return qty, (px if order.req.price is None else order.req.price)


def on_tick(price: float, tick: float) -> bool:
    """True if `price` lies on the tick grid (within float noise)."""
    n = price / tick
    return math.isfinite(n) and abs(n - round(n)) <= 1e-6


def is_ioc(order: SimOrder) -> bool:
    return order.req.tif is TimeInForce.IOC
