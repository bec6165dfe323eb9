"""Child orders (分仓 and icebergs): one leg order split across sub-accounts and sliced.

The pair-trade machine works with one order per leg (the *parent*). For an
account with sub-accounts, the parent is split by the account's allocation
rule (`execution.allocation`) and each part cut into iceberg slices of at most
`iceberg_visible` lots. Slices of a part go one after another (the next when
the previous is done); parts go at once. The venue sees only children
(`<parent>/<n>`); their reports are folded back into parent reports, so the
machine sees one order: its cumulative fill is the children's sum, it is done
when no child is live and no slice waits. A status query of the parent asks
every child and answers once all have.

Pure: no sockets. The executor logs each child (`ChildSent`) before sending it,
so after a restart `restore` rebuilds which children a parent has, and
`restore_fill` replays the parent fills the trade had applied: a parent fill's
exec id names the child and its cumulative quantity (``<child>#<cum>``), so
the children's fills before the crash are known again and a status round
after the restart neither loses nor repeats one.
"""

from __future__ import annotations

import msgspec

from bus.messages import CancelRequest, ExecType, OrderEvent, OrderPurpose, OrderRequest, RejectCode, StatusRequest, TimeInForce
from execution.allocation import Allocator, iceberg_slices
from execution.wal import CHILD_SEP, child_order

SEP = CHILD_SEP
FILL_SEP = "#"  # a parent fill's exec id: <child cl_ord_id>#<child's cumulative quantity>
KEEP_FINISHED = 10_000
UNWINDS = (OrderPurpose.ROLLBACK, OrderPurpose.FLATTEN)


def session_down(ev: OrderEvent) -> bool:
    """An answer that says the session was down: the request never reached the venue."""
    return ev.exec_type in (ExecType.REJECT, ExecType.CANCEL_REJECT) and RejectCode.SESSION_DOWN.of(ev.reason)


def parent_of(cl_ord_id: str) -> str | None:
    """The parent id of a child order id, None for an order that is not a child."""
    head, sep, tail = cl_ord_id.rpartition(SEP)
    return head if sep and tail.isdigit() else None


class _Child:
    __slots__ = ("req", "cum", "avg", "done", "rejected", "reason", "answered", "queried")

    def __init__(self, req: OrderRequest, queried: bool = False) -> None:
        self.req = req
        self.answered = False  # the venue said something about it (so a later SESSION_DOWN is not its fate)
        # a status or cancel went out for it, or it was sent before a restart: a SESSION_DOWN answer is
        # then about a query that never arrived, never the order's fate (only a new order's is)
        self.queried = queried
        self.cum = 0
        self.avg = 0.0
        self.done = False
        self.rejected = False
        self.reason = ""


class _Parent:
    __slots__ = ("req", "children", "queue", "acked", "cum", "cancelled", "asking")

    def __init__(self, req: OrderRequest) -> None:
        self.req = req
        self.children: dict[str, _Child] = {}
        self.queue: dict[str, list[int]] = {}  # sub-account -> iceberg slices still to send
        self.acked = False
        self.cum = 0
        self.cancelled = False
        self.asking: set[str] = set()  # children whose status answer is awaited

    @property
    def live(self) -> bool:
        return any(not c.done for c in self.children.values()) or any(self.queue.values())

    def avg(self) -> float:
        return sum(c.cum * c.avg for c in self.children.values()) / self.cum if self.cum else 0.0


class ChildRouter:
    """Splits parent orders of accounts with sub-accounts; folds child reports into parent reports."""

    def __init__(self, allocators: dict[str, Allocator], visible: dict[str, int]) -> None:
        self.allocators = allocators
        self.visible = visible
        self._parents: dict[str, _Parent] = {}
        self._finished: dict[str, _Parent] = {}  # recently done parents, for late child fills
        self._trade_held: dict[tuple[str, str], dict[str, int]] = {}  # (trade, instrument) -> sub-account -> lots
        self._positions: dict[str, dict[str, int]] = {}  # instrument -> sub-account -> lots (for the lot caps)

    def splits(self, order: OrderRequest) -> bool:
        return order.account in self.allocators

    def route(self, order: OrderRequest) -> tuple[list[OrderRequest], OrderEvent | None]:
        """The children to send now for a new parent (the order itself if its account has no
        sub-accounts), or the parent's REJECT when the sub-accounts cannot take the whole quantity."""
        if not self.splits(order):
            return [order], None
        parent = _Parent(order)
        parts = self._unwind_parts(order) if order.purpose in UNWINDS else None
        if parts is None:
            alloc = self.allocators[order.account].allocate(order.instrument, order.side, order.qty,
                                                            self._positions.get(order.instrument, {}))
            if alloc.placed < order.qty:
                return [], self._event(parent, ExecType.REJECT, 0, 0.0, "", leaves=0,
                                       reason=alloc.reason or f"ALLOC_NONE: account={order.account}")
            parts = [(p.account, p.qty) for p in alloc.parts]
        self._parents[order.cl_ord_id] = parent
        # a resting order is sliced; an IOC takes what is there now, so its parts go whole
        visible = 0 if order.tif is TimeInForce.IOC else self.visible.get(order.account, 0)
        out = []
        for account, qty in parts:
            first, *rest = iceberg_slices(qty, visible)
            parent.queue[account] = rest
            out.append(self._child(parent, account, first))
        return out, None

    def plan(self, order: OrderRequest) -> tuple[tuple[str, int], ...] | None:
        """What `route` would send now for a new entry parent, without routing it: None (the order
        itself), the children's (sub-account, qty) in order, or () when it would not go out as one
        child per sub-account (the sub-accounts cannot take it all, or it would be sliced)."""
        if not self.splits(order):
            return None
        alloc = self.allocators[order.account].allocate(order.instrument, order.side, order.qty,
                                                        self._positions.get(order.instrument, {}), advance=False)
        visible = 0 if order.tif is TimeInForce.IOC else self.visible.get(order.account, 0)
        parts = tuple((p.account, p.qty) for p in alloc.parts)
        if alloc.placed < order.qty or (visible and any(q > visible for _, q in parts)):
            return ()
        return parts

    def _unwind_parts(self, order: OrderRequest) -> list[tuple[str, int]] | None:
        """An unwind flattens each sub-account's own holding of this trade's leg (None: nothing known)."""
        held = self._trade_held.get((order.trade_id, order.instrument), {})
        parts, left = [], order.qty
        for account, lots in held.items():
            take = min(left, -order.side.sign * lots)  # a SELL unwinds longs, a BUY shorts
            if take > 0:
                parts.append((account, take))
                left -= take
        if not parts:
            return None
        if left > 0:
            parts[0] = (parts[0][0], parts[0][1] + left)
        return parts

    def _child(self, parent: _Parent, account: str, qty: int) -> OrderRequest:
        req = child_order(parent.req, len(parent.children) + 1, account, qty)
        parent.children[req.cl_ord_id] = _Child(req)
        return req

    def parent_request(self, cl_ord_id: str) -> OrderRequest | None:
        parent = self._parents.get(cl_ord_id)
        return parent.req if parent is not None else None

    def restore(self, parent: OrderRequest, child: OrderRequest) -> None:
        """After a restart: `child` (logged as sent) belongs to `parent`. Slices not yet sent wait
        behind the last child logged (the allocation's original split is not logged)."""
        p = self._parents.setdefault(parent.cl_ord_id, _Parent(parent))
        p.children.setdefault(child.cl_ord_id, _Child(child, queried=True))
        left = parent.qty - sum(c.req.qty for c in p.children.values())
        visible = 0 if parent.tif is TimeInForce.IOC else self.visible.get(parent.account, 0)
        p.queue = {child.account: list(iceberg_slices(left, visible))} if left > 0 and visible else {}

    def restore_fill(self, ev: OrderEvent) -> None:
        """After a restart: a parent FILL the trade applied (from the log) says its child had
        `cum` filled; raise the child to it (the rest of the state follows)."""
        child_id, sep, cum_text = ev.exec_id.rpartition(FILL_SEP)
        pid = parent_of(child_id) if sep and cum_text.isdigit() else None
        parent = self._parents.get(pid or "")
        child = parent.children.get(child_id) if parent is not None else None
        if parent is None or child is None or int(cum_text) <= child.cum:
            return
        cum = int(cum_text)
        child.avg = (child.cum * child.avg + (cum - child.cum) * ev.last_px) / cum
        self._held(parent, child.req.account, cum - child.cum)
        child.cum = cum
        child.answered = True
        if cum >= child.req.qty:
            child.done = True
        parent.acked = True
        parent.cum = sum(c.cum for c in parent.children.values())

    def restore_cancel(self, cl_ord_id: str) -> None:
        """After a restart: the trade had asked to cancel this parent; no slice of it goes out any more."""
        parent = self._parents.get(cl_ord_id)
        if parent is not None:
            parent.cancelled = True
            parent.queue = {}

    def cancel(self, req: CancelRequest) -> list[CancelRequest]:
        parent = self._parents.get(req.cl_ord_id)
        if parent is None:
            return [req]
        parent.cancelled = True
        parent.queue = {}
        live = [(cl, c) for cl, c in parent.children.items() if not c.done]
        for _, c in live:
            c.queried = True
        return [msgspec.structs.replace(req, cl_ord_id=cl) for cl, _ in live]

    def status(self, req: StatusRequest) -> list[StatusRequest]:
        # a parent already done is asked through its children too: the venue does not know its id
        parent = self._parents.get(req.cl_ord_id) or self._finished.get(req.cl_ord_id)
        if parent is None:
            return [req]
        parent.asking = set(parent.children)
        for c in parent.children.values():
            c.queried = True
        return [msgspec.structs.replace(req, cl_ord_id=cl) for cl in parent.children]

    def on_report(self, ev: OrderEvent) -> tuple[list[OrderEvent], list[OrderRequest]]:
        """A child's report: the parent reports it makes, and the next slices to send."""
        pid = parent_of(ev.cl_ord_id) or ""
        finished = pid not in self._parents
        parent = self._parents.get(pid) or self._finished.get(pid)
        child = parent.children.get(ev.cl_ord_id) if parent is not None else None
        if parent is None or child is None:
            return [], []
        out: list[OrderEvent] = []
        et = ev.exec_type
        first_answer = not child.answered
        child.answered = True
        if session_down(ev) and (child.queried or not first_answer):
            return [], []  # a query that never reached the venue: the child stays as it was, asked again later
        prev_cum, prev_avg = child.cum, child.avg
        if et is ExecType.REJECT:
            if not child.done:
                child.done = child.rejected = True
                child.reason = child.reason or ev.reason
        else:
            if ev.cum_qty > child.cum:  # a refused cancel counts the fills it reports too
                child.cum = ev.cum_qty
                child.avg = ev.avg_px or ev.last_px or child.avg
            if et is ExecType.CANCEL_REJECT:  # the child lives on, unless the refusal says it is all filled
                child.done = child.done or child.cum >= child.req.qty
            elif et is not ExecType.ACK and ev.leaves_qty <= 0:
                child.done = True
        if child.cum > prev_cum:
            self._held(parent, child.req.account, child.cum - prev_cum)
        if finished:  # a late fill of a parent already reported done reopens it in the trade
            out = self._fold_fill(parent, ev, child, prev_cum, prev_avg, leaves=0)
            if ev.cl_ord_id in parent.asking:
                parent.asking.discard(ev.cl_ord_id)
                if not parent.asking and not out:
                    out.append(self._answer(parent, done=True))
            return out, []
        if et is ExecType.ACK and not parent.acked:
            parent.acked = True
            out.append(self._event(parent, ExecType.ACK, 0, 0.0, "", leaves=parent.req.qty - parent.cum))
        nxt: list[OrderRequest] = []
        slices = parent.queue.get(child.req.account)
        if child.done and slices:
            if child.rejected or parent.cancelled:
                slices.clear()
            else:  # the next iceberg slice of this sub-account
                nxt.append(self._child(parent, child.req.account, slices.pop(0)))
        done = not parent.live and not nxt
        cum = sum(c.cum for c in parent.children.values())
        out += self._fold_fill(parent, ev, child, prev_cum, prev_avg, leaves=0 if done else parent.req.qty - cum)
        answered = ev.cl_ord_id in parent.asking
        parent.asking.discard(ev.cl_ord_id)
        if done:
            parent.asking.clear()
            if not (out and out[-1].exec_type is ExecType.FILL):  # the trade must hear that the parent is over
                out.append(self._answer(parent, done=True) if answered else self._end(parent, ev.reason))
            self._retire(parent)
        elif answered and not parent.asking:
            out.append(self._answer(parent, done=False))
        return out, nxt

    def _fold_fill(self, parent: _Parent, ev: OrderEvent, child: _Child, prev_cum: int, prev_avg: float,
                   leaves: int) -> list[OrderEvent]:
        cum = sum(c.cum for c in parent.children.values())
        if cum <= parent.cum:
            return []
        delta = cum - parent.cum
        parent.cum = cum
        child_delta = child.cum - prev_cum
        px = (child.cum * child.avg - prev_cum * prev_avg) / child_delta if child_delta > 0 else child.avg
        return [self._event(parent, ExecType.FILL, delta, px, f"{ev.cl_ord_id}{FILL_SEP}{child.cum}", leaves=leaves,
                            reason=ev.reason)]

    def _end(self, parent: _Parent, reason: str) -> OrderEvent:
        if parent.cum == 0 and all(c.rejected for c in parent.children.values()):
            first = next(iter(parent.children.values()))
            return self._event(parent, ExecType.REJECT, 0, 0.0, "", leaves=0, reason=first.reason)
        return self._event(parent, ExecType.CANCELLED, 0, 0.0, "", leaves=0, reason=reason)

    def _retire(self, parent: _Parent) -> None:
        self._parents.pop(parent.req.cl_ord_id, None)
        self._finished[parent.req.cl_ord_id] = parent
        while len(self._finished) > KEEP_FINISHED:
            self._finished.pop(next(iter(self._finished)))

    def _held(self, parent: _Parent, account: str, qty: int) -> None:
        """Lots a sub-account now holds for this trade's leg (signed), and in total for the instrument."""
        req = parent.req
        key = (req.trade_id, req.instrument)
        book = self._trade_held.setdefault(key, {})
        book[account] = book.get(account, 0) + req.side.sign * qty
        pos = self._positions.setdefault(req.instrument, {})
        pos[account] = pos.get(account, 0) + req.side.sign * qty

    def _answer(self, parent: _Parent, done: bool) -> OrderEvent:
        """The parent's status once every child answered."""
        if done and parent.cum == 0 and all(c.rejected for c in parent.children.values()):
            return self._end(parent, "")
        return self._event(parent, ExecType.STATUS, 0, 0.0, "", leaves=0 if done else parent.req.qty - parent.cum)

    @staticmethod
    def _event(parent: _Parent, et: ExecType, last_qty: int, last_px: float, exec_id: str, *, leaves: int,
               reason: str = "") -> OrderEvent:
        req = parent.req
        return OrderEvent(cl_ord_id=req.cl_ord_id, exec_type=et, venue=req.venue, instrument=req.instrument,
                          side=req.side, order_qty=req.qty, cum_qty=parent.cum, leaves_qty=leaves, last_qty=last_qty,
                          last_px=last_px, avg_px=parent.avg(), exec_id=exec_id, reason=reason)
