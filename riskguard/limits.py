"""Pre-trade limits: the checks every order passes before it leaves the executor.

`PreTradeLimits.check` returns None (pass) or a denial reason
``LIMIT_<CONDITION>: key=value ...``. A passing order is counted in the order
rate window, so call `check` exactly once per order actually sent.

Exposure-reducing orders (purpose ROLLBACK or FLATTEN) must never strand a
leg. They are checked only for being well-formed (known instrument on its own
venue, positive quantity, finite positive price): a malformed order reduces
nothing, so refusing it traps nothing. Every other check would keep exposure
on the book and is skipped for them: quantity, notional, price band,
position, pair position, allow/deny lists, and the order rate (they are still
counted in the rate window, so they throttle new opening orders). RESUBMIT
orders complete a pair and are checked like OPEN: if one is refused, the
executor rolls the filled leg back, which these limits let through.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from bus.messages import OrderPurpose, OrderRequest
from configs.schema import AccountCfg, Config, InstrumentCfg, LimitsCfg, SubAccountCfg
from riskguard.catalog import Catalog

REDUCING = frozenset({OrderPurpose.ROLLBACK, OrderPurpose.FLATTEN})
RATE_WINDOW_NS = 1_000_000_000
_EPS = 1e-9


def _num(x: float) -> str:
    return f"{x:.10g}"


class PositionSource(Protocol):
    """Where the limits read positions (`execution.positions.PositionBook`): they keep none."""

    def position(self, instrument: str) -> int: ...

    def units(self, pair: str) -> int: ...


class PreTradeLimits:
    """Per-order and per-pair limits, judged against the positions of `book`."""

    def __init__(
        self,
        cfg: LimitsCfg,
        instruments: Mapping[str, InstrumentCfg],
        accounts: Mapping[str, AccountCfg] | None = None,
        *,
        book: PositionSource,
        base_currency: str = "USD",
    ) -> None:
        """`accounts` enables the account check and the sub-accounts' allow/deny lists."""
        self.cfg = cfg
        self.base_currency = base_currency
        self._cat = Catalog(instruments, accounts)
        self._subs: dict[str, SubAccountCfg] = {
            s.name: s for acct in self._cat.accounts.values() for s in acct.sub_accounts
        }
        self.book = book
        self._sent: deque[int] = deque()

    @classmethod
    def from_config(cls, cfg: Config, book: PositionSource) -> "PreTradeLimits":
        return cls(cfg.risk.limits, cfg.instruments, cfg.accounts, book=book, base_currency=cfg.run.base_currency)

    # --- checks ------------------------------------------------------------------

    def check_pair(self, pair: str, delta: int) -> str | None:
        """Deny a pair trade that would take |units| past `max_pair_position` (reductions pass)."""
        units = self.book.units(pair)
        after = units + delta
        limit = self.cfg.max_pair_position
        if abs(after) > limit and abs(after) > abs(units):
            return f"LIMIT_PAIR_POSITION: pair={pair} units={units} delta={delta} max={limit}"
        return None

    def check(
        self,
        order: OrderRequest,
        now_ns: int,
        last_quote_mid: float | None,
        fx_to_base: float | None,
        *,
        pair: str | None = None,
        pair_delta: int = 0,
        dry: bool = False,
    ) -> str | None:
        """None if `order` may be sent (and it is then counted as sent), else the denial reason.

        `last_quote_mid` is the instrument's last mid (None: no quote yet);
        `fx_to_base` converts the instrument's currency into the base currency
        (None: unknown). With `pair`, the pair position limit is checked too.
        `dry`: every check but the order rate, and nothing counted (arming an entry ahead of
        its signal; the rate is judged when it comes, `rate_room`).
        """
        if not dry:
            self.rate_room(now_ns)
        reason = self._sanity(order)
        if reason is None and order.purpose not in REDUCING:
            reason = self._opening(order, last_quote_mid, fx_to_base, pair, pair_delta, rate=not dry)
        if reason is None and not dry:
            self._sent.append(now_ns)
        return reason

    def rate_room(self, now_ns: int) -> float:
        """How many more orders the rate window lets through at `now_ns` (k orders pass `check` one
        after the other iff k <= rate_room)."""
        sent = self._sent
        while sent and sent[0] <= now_ns - RATE_WINDOW_NS:
            sent.popleft()
        return self.cfg.max_orders_per_s - len(sent)

    def _sanity(self, order: OrderRequest) -> str | None:
        key = self._cat.resolve(order.venue, order.instrument)
        if key is None:
            return f"LIMIT_INSTRUMENT_UNKNOWN: instrument={order.instrument} venue={order.venue}"
        inst = self._cat.instruments[key]
        if inst.venue != order.venue:
            return f"LIMIT_VENUE_MISMATCH: instrument={key} venue={order.venue} expected={inst.venue}"
        if order.qty <= 0:
            return f"LIMIT_ORDER_QTY: qty={order.qty} min=1"
        if order.price is not None and not (math.isfinite(order.price) and order.price > 0.0):
            return f"LIMIT_ORDER_PRICE: px={order.price}"
        return None

    def _opening(
        self,
        order: OrderRequest,
        mid: float | None,
        fx_to_base: float | None,
        pair: str | None,
        pair_delta: int,
        rate: bool = True,
    ) -> str | None:
        cfg = self.cfg
        key = self._cat.resolve(order.venue, order.instrument)
        assert key is not None  # _sanity ran first
        inst = self._cat.instruments[key]

        if self._cat.accounts:
            if self._cat.parent_account(order.account) is None:
                return f"LIMIT_ACCOUNT_UNKNOWN: account={order.account}"
            sub = self._subs.get(order.account)
            if sub is not None:
                if key in sub.deny:
                    return f"LIMIT_INSTRUMENT_DENIED: account={order.account} instrument={key}"
                if sub.allow and key not in sub.allow:
                    return f"LIMIT_INSTRUMENT_NOT_ALLOWED: account={order.account} instrument={key}"

        if order.qty > cfg.max_order_qty:
            return f"LIMIT_ORDER_QTY: qty={order.qty} max={cfg.max_order_qty}"

        if mid is None or not math.isfinite(mid) or mid <= 0.0:
            return f"LIMIT_NO_QUOTE: instrument={key}"
        if order.price is not None:
            off_ticks = abs(order.price - mid) / inst.tick
            if off_ticks > cfg.price_band_ticks + _EPS:
                return (
                    f"LIMIT_PRICE_BAND: instrument={key} px={_num(order.price)} mid={_num(mid)} "
                    f"ticks={off_ticks:.1f} max={cfg.price_band_ticks}"
                )

        if fx_to_base is None or not math.isfinite(fx_to_base) or fx_to_base <= 0.0:
            return f"LIMIT_FX_MISSING: ccy={inst.currency} base={self.base_currency}"
        px = order.price if order.price is not None else mid
        notional = order.qty * px * inst.multiplier * fx_to_base
        if notional > cfg.max_order_notional:
            return (
                f"LIMIT_ORDER_NOTIONAL: notional={notional:.2f} max={cfg.max_order_notional:.2f} "
                f"ccy={self.base_currency}"
            )

        pos = self.book.position(key)
        after = pos + order.side.sign * order.qty
        if abs(after) > cfg.max_position and abs(after) > abs(pos):
            return (
                f"LIMIT_POSITION: instrument={key} position={pos} order={order.side.sign * order.qty} "
                f"max={cfg.max_position}"
            )

        if pair is not None:
            reason = self.check_pair(pair, pair_delta)
            if reason is not None:
                return reason

        n = len(self._sent)
        if rate and n + 1 > cfg.max_orders_per_s:
            return f"LIMIT_ORDER_RATE: orders={n} window_ms=1000 max={_num(cfg.max_orders_per_s)}"
        return None
