"""The trigger engine: latest books in, pair-trade Signals out, every suppression counted.

Per evaluation the kernel re-prices the pairs touched since the last one and
applies the data gates (missing quote/FX, bad book, stale leg, old quote,
warm-up, top-of-book size). For the few pairs it flags, this module applies
the business gates in order: trading hours, risk state, cooldown, inventory.
A suppression increments ``suppressed[CATEGORY_CONDITION]`` and records the
full reason (``CATEGORY_CONDITION: key=value ...``) in ``last_reason[pair]``.

Typical actor loop::

    engine = TriggerEngine(cfg); warm_up()
    ...drain sockets: engine.on_quote(q) / on_fx(r) / on_status(s) / set_risk(level)
    for sig in engine.evaluate(time.monotonic_ns(), utc_ns=time.time_ns()): publish(sig)
    ...on a terminal pair trade: engine.on_trade_done(pair, direction, closing, units, signal_id)

With `send`, `evaluate` hands each signal's numbers (`SIGNAL_NUMBERS`, in that order) to
`send((pair, direction, closing), numbers)` the moment its gates have passed, before the
`Signal`, its legs and the inventory's bookkeeping are built: the trigger writes them into the
signal's pre-encoded frame (`bus.frames`) and sends it, and the rest follows.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

import msgspec

from bus.messages import FxRate, InstrumentStatus, Quote, RiskLevel, Side, Signal, SignalLeg
from configs.schema import Config, PairCfg
from signals import kernels as K
from signals.book import Book
from configs.hours import Session, clock, is_open, parse_sessions
from signals.inventory import Inventory
from signals.kernels import Decision, Gate, KernelState, ewma_alpha
from signals.pairs import LegConversion, leg_conversion

NS_PER_MS = 1_000_000
# what `evaluate(send=...)` hands over per signal, in this order (paths into a Signal)
SIGNAL_NUMBERS = ("signal_id", "legs.0.qty", "legs.0.limit_px", "legs.1.qty", "legs.1.limit_px", "spread", "zscore",
                  "expiry_ns", "tick_recv_ns")
SignalSend = Callable[[tuple[str, Side, bool], tuple], None]  # (pair, direction, closing), SIGNAL_NUMBERS
_BUY, _SELL = Side.BUY, Side.SELL  # module globals: an enum class attribute costs a Python-level lookup

_KERNEL_REASON = {
    Gate.NO_QUOTE: "DATA_NO_QUOTE",
    Gate.NO_FX: "DATA_NO_FX",
    Gate.BAD_BOOK: "DATA_BAD_BOOK",
    Gate.STALE: "FEED_STALE",
    Gate.QUOTE_AGE: "QUOTE_OLD",
    Gate.WARMUP: "WARMUP_TICKS",
    Gate.MIN_SIZE: "SIZE_MIN",
}
HOURS_CLOSED = "HOURS_CLOSED"
RISK_BLOCKED = "RISK_STATE"
COOLDOWN_ACTIVE = "COOLDOWN_ACTIVE"
INVENTORY_CAP = "INVENTORY_CAP"
INVENTORY_PENDING = "INVENTORY_PENDING"
REASONS: tuple[str, ...] = (*_KERNEL_REASON.values(), HOURS_CLOSED, RISK_BLOCKED, COOLDOWN_ACTIVE, INVENTORY_CAP,
                            INVENTORY_PENDING)

# keyed by the kernel's int codes (Decision is an IntEnum: building a member costs ~12 us on a cold cache)
_SIGN = {int(Decision.OPEN_BUY): 1, int(Decision.OPEN_SELL): -1, int(Decision.CLOSE_BUY): 1, int(Decision.CLOSE_SELL): -1}
_CLOSING = frozenset((int(Decision.CLOSE_BUY), int(Decision.CLOSE_SELL)))
# the kernel's outputs read straight from its arenas' bytes (a numpy scalar read costs ~9 us cold)
_I1 = struct.Struct("@q")
_I3 = struct.Struct("@3q")  # codes row: decision, gate, leg
_BID_ASK = struct.Struct("@2d")
_OUT = struct.Struct(f"@{K.O_N}d")
assert (K.C_DECISION, K.C_GATE, K.C_LEG) == (0, 1, 2) and (K.PX_BID, K.PX_ASK) == (0, 1)


class PairView(msgspec.Struct, frozen=True, kw_only=True):
    """A pair's latest figures, for heartbeats, logs and the CLI (NaN until priced)."""

    pair: str
    buy: float  # executable spread to buy (A ask - B bid), pair currency per pair unit
    sell: float  # executable spread to sell (A bid - B ask)
    mid: float
    mean: float
    sd: float
    z: float
    hedge: float  # OLS slope of A on B over the hedge window
    ticks: int
    position: int
    pending_buy: int
    pending_sell: int


class _Pair:
    __slots__ = ("name", "cfg", "a", "b", "conv_a", "conv_b", "sessions_a", "sessions_b", "ttl_ns",
                 "cooldown_ns", "expiry_ns", "last_signal_ns", "count", "px_a", "px_b", "out", "recv")

    def __init__(self, name: str, cfg: PairCfg, a: int, b: int, conv_a: LegConversion, conv_b: LegConversion,
                 sessions_a: tuple[Session, ...], sessions_b: tuple[Session, ...], ttl_ns: int) -> None:
        self.name, self.cfg, self.a, self.b = name, cfg, a, b
        self.conv_a, self.conv_b = conv_a, conv_b
        self.sessions_a, self.sessions_b = sessions_a, sessions_b
        self.ttl_ns = ttl_ns
        self.cooldown_ns = int(cfg.cooldown_ms * NS_PER_MS)
        self.expiry_ns = int(cfg.expiry_ms * NS_PER_MS)
        self.last_signal_ns: int | None = None
        self.count = 0
        # byte offsets in the kernel's arenas: legs' px rows, the pair's out row, the receive times
        # of its legs and FX rates (set by TriggerEngine)
        self.px_a = self.px_b = self.out = 0
        self.recv: tuple[int, ...] = ()


class TriggerEngine:
    """Latest books and FX of a config's active instruments, its pairs' rules and inventories."""

    def __init__(self, cfg: Config, *, id_prefix: str = "", pending_ttl_ms: float | None = None,
                 risk: RiskLevel = RiskLevel.NORMAL) -> None:
        """Build from `cfg`; ValueError names a pair whose legs cannot be converted.

        `id_prefix` starts every signal id (e.g. a run epoch, so ids stay unique
        across restarts); a signal not reported done within `pending_ttl_ms`
        (default: the pair's expiry_ms + 2 x deadline_ms) stops counting against
        its pair's inventory.
        """
        instruments = cfg.active_instruments()
        keys = list(instruments)
        fx_keys = set(cfg.fx_instruments())
        names = list(cfg.pairs)
        max_window = max((p.hedge_window for p in cfg.pairs.values()), default=2)
        self.state = KernelState(len(names), len(keys), max_window)
        self.book = Book(keys, instruments, self.state)
        self.pairs: tuple[str, ...] = tuple(names)
        self.pair_index = {n: i for i, n in enumerate(names)}
        self._pairs: list[_Pair] = []
        pi, pf = self.state.pi, self.state.pf
        idx = self.book.index
        for p, name in enumerate(names):
            pc = cfg.pairs[name]
            for leg in (pc.leg_a, pc.leg_b):
                if leg not in idx:
                    raise ValueError(f"CONFIG_PAIR_LEG: pair={name} leg={leg} why=not an active instrument")
            ca = leg_conversion(pc.leg_a, instruments[pc.leg_a], pc, fx_keys)
            cb = leg_conversion(pc.leg_b, instruments[pc.leg_b], pc, fx_keys)
            pi[p, K.PI_LEG_A], pi[p, K.PI_LEG_B] = idx[pc.leg_a], idx[pc.leg_b]
            pi[p, K.PI_FX_A] = idx[ca.fx] if ca.fx else -1
            pi[p, K.PI_FX_B] = idx[cb.fx] if cb.fx else -1
            pi[p, K.PI_FXINV_A], pi[p, K.PI_FXINV_B] = int(ca.invert), int(cb.invert)
            pi[p, K.PI_WINDOW], pi[p, K.PI_WARMUP] = pc.hedge_window, pc.warmup_ticks
            pi[p, K.PI_MODE] = K.MODES[pc.mode]
            pf[p, K.PF_UNIT_A], pf[p, K.PF_UNIT_B] = ca.unit, cb.unit
            pf[p, K.PF_RATIO_A], pf[p, K.PF_RATIO_B] = pc.ratio_a, pc.ratio_b
            pf[p, K.PF_ALPHA] = ewma_alpha(pc.ewma_halflife)
            pf[p, K.PF_ENTRY], pf[p, K.PF_EXIT], pf[p, K.PF_MIN_SIZE] = pc.entry, pc.exit, pc.min_size
            pf[p, K.PF_MAX_AGE_NS] = pc.max_quote_age_ms * NS_PER_MS
            ttl_ms = pending_ttl_ms if pending_ttl_ms is not None else pc.expiry_ms + 2.0 * pc.deadline_ms
            self._pairs.append(_Pair(name, pc, idx[pc.leg_a], idx[pc.leg_b], ca, cb,
                                     parse_sessions(instruments[pc.leg_a].hours),
                                     parse_sessions(instruments[pc.leg_b].hours), int(ttl_ms * NS_PER_MS)))
        st = self.state
        fbase, ibase = st.fa.ctypes.data, st.ia.ctypes.data
        self._fbytes, self._ibytes = memoryview(st.fa).cast("B"), memoryview(st.ia).cast("B")
        self._busy_off, self._busy_step = st.busy.ctypes.data - ibase, st.busy.strides[0]
        self._codes_off = [st.codes[p:].ctypes.data - ibase for p in range(len(names))]
        for p, pr in enumerate(self._pairs):
            pr.px_a, pr.px_b = st.px[pr.a:].ctypes.data - fbase, st.px[pr.b:].ctypes.data - fbase
            pr.out = st.out[p:].ctypes.data - fbase
            rows = [pr.a, pr.b] + [int(pi[p, c]) for c in (K.PI_FX_A, K.PI_FX_B) if pi[p, c] >= 0]
            pr.recv = tuple(st.tm[i:].ctypes.data - ibase + K.TM_RECV * 8 for i in rows)
        self.inventory = Inventory([cfg.pairs[n].max_inventory for n in names])
        self.id_prefix = id_prefix
        self.risk = risk
        self.suppressed: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.last_reason: dict[str, str] = {}
        self.evaluations = 0
        self.signals = 0

    # --- inputs ---------------------------------------------------------------

    def on_quote(self, q: Quote) -> bool:
        """Store a quote (nothing is evaluated); False if its instrument is unknown."""
        return self.book.on_quote(q) >= 0

    def on_fx(self, r: FxRate) -> bool:
        """Store an FX rate; False if no active FX instrument has that pair."""
        return self.book.on_fx(r) >= 0

    def on_status(self, s: InstrumentStatus) -> bool:
        """Record an instrument's stale flag; False if unknown."""
        return self.book.on_status(s) >= 0

    def set_risk(self, level: RiskLevel) -> None:
        """NORMAL: everything; WARN, REDUCE_ONLY: closing signals only; HALTED: nothing."""
        self.risk = level

    def on_trade_done(self, pair: str, direction: Side, closing: bool, units_filled: int,
                      signal_id: str | None = None) -> None:
        """A pair trade ended with `units_filled` ratio units filled; update inventory, release its signal."""
        p = self.pair_index[pair]
        self.inventory.done(p, direction.sign, closing, units_filled, signal_id)
        self.state.ps[p, K.S_POS] = self.inventory.position[p]

    def set_position(self, pair: str, units: int) -> None:
        """Seed a pair's filled position (ratio units, + long the spread), e.g. from the executor at start."""
        p = self.pair_index[pair]
        self.inventory.position[p] = units
        self.state.ps[p, K.S_POS] = units

    # --- evaluation -----------------------------------------------------------

    def evaluate(self, now_ns: int, touched: Iterable[str] = (), *, utc_ns: int | None = None,
                 send: SignalSend | None = None) -> list[Signal]:
        """Re-price the pairs touched since the last call (plus those of `touched`) and return new Signals.

        `now_ns` is monotonic (quote ages, cooldowns, expiry); `utc_ns` is UTC
        wall-clock for trading hours; None checks each leg against its own
        latest venue time (right for replays). An unknown key in `touched`
        raises KeyError. `send`: see the module docstring; a signal whose `send`
        raises is not counted (no cooldown, nothing pending) and the error propagates.
        """
        for key in touched:
            self.book.touch(key)
        self.evaluations += 1
        self.inventory.expire(now_ns)
        n = self.state.run(now_ns)
        if n == 0:
            return []
        signals: list[Signal] = []
        ib, codes = self._ibytes, self._codes_off
        for k in range(n):
            p = _I1.unpack_from(ib, self._busy_off + k * self._busy_step)[0]
            dec, gate, leg = _I3.unpack_from(ib, codes[p])
            if gate:
                self._suppress(p, _KERNEL_REASON[Gate(gate)], self._kernel_detail(p, Gate(gate), leg, now_ns))
            elif dec:
                sig = self._apply_rules(p, dec, now_ns, utc_ns, send)
                if sig is not None:
                    signals.append(sig)
        return signals

    def _apply_rules(self, p: int, dec: int, now_ns: int, utc_ns: int | None, send: SignalSend | None) -> Signal | None:
        """The business gates on the kernel's decision `dec` (a `Decision` value) for pair `p`."""
        pr = self._pairs[p]
        closing = dec in _CLOSING
        sign = _SIGN[dec]
        for leg, sessions in ((pr.a, pr.sessions_a), (pr.b, pr.sessions_b)):
            t = utc_ns if utc_ns is not None else self.book.exch_ns(leg)
            if not is_open(sessions, t):
                return self._suppress(p, HOURS_CLOSED, f"leg={self.book.keys[leg]} utc={clock(t)}")
        risk = self.risk
        if risk is RiskLevel.HALTED or (not closing and risk is not RiskLevel.NORMAL):
            return self._suppress(p, RISK_BLOCKED, f"state={risk.value} closing={closing}")
        if pr.last_signal_ns is not None and now_ns - pr.last_signal_ns < pr.cooldown_ns:
            left = (pr.cooldown_ns - (now_ns - pr.last_signal_ns)) / NS_PER_MS
            return self._suppress(p, COOLDOWN_ACTIVE, f"left_ms={left:.1f}")
        inv = self.inventory
        side = "BUY" if sign > 0 else "SELL"
        if closing:
            units = min(pr.cfg.lots, inv.closable(p, sign))
            if units <= 0:
                return self._suppress(p, INVENTORY_PENDING, f"dir={side} position={inv.position[p]} "
                                                            f"pending={inv.pending_units(p, sign, True)}")
        else:
            units = pr.cfg.lots
            worst = inv.exposure_if_opened(p, sign, units)
            if worst > inv.max_inventory[p]:
                return self._suppress(p, INVENTORY_CAP, f"dir={side} worst={worst} max={inv.max_inventory[p]}")
        return self._emit(p, pr, sign, closing, units, now_ns, send)

    def _emit(self, p: int, pr: _Pair, sign: int, closing: bool, units: int, now_ns: int,
              send: SignalSend | None) -> Signal:
        f, ib = self._fbytes, self._ibytes
        a_bid, a_ask = _BID_ASK.unpack_from(f, pr.px_a)
        b_bid, b_ask = _BID_ASK.unpack_from(f, pr.px_b)
        out = _OUT.unpack_from(f, pr.out)
        if sign > 0:  # buy the spread: lift A's ask, hit B's bid
            direction, px_a, px_b, spread, z = _BUY, a_ask, b_bid, out[K.O_BUY], out[K.O_Z_BUY]
        else:
            direction, px_a, px_b, spread, z = _SELL, a_bid, b_ask, out[K.O_SELL], out[K.O_Z_SELL]
        tick_ns = 0
        for off in pr.recv:  # the newest receive time among the legs and their FX rates
            t = _I1.unpack_from(ib, off)[0]
            if t > tick_ns:
                tick_ns = t
        signal_id = f"{self.id_prefix}{pr.name}-{pr.count + 1}"
        expiry_ns = now_ns + pr.expiry_ns
        if send is not None:  # the numbers out first; the Signal and the bookkeeping after
            send((pr.name, direction, closing), (signal_id, units * pr.cfg.ratio_a, px_a, units * pr.cfg.ratio_b, px_b,
                                                 spread, z, expiry_ns, tick_ns))
        pr.count += 1
        sig = Signal(signal_id=signal_id, pair=pr.name, direction=direction, closing=closing,
                     legs=self._legs(pr, sign, units, px_a, px_b), spread=spread, zscore=z, expiry_ns=expiry_ns,
                     tick_recv_ns=tick_ns, signal_ns=now_ns)
        pr.last_signal_ns = now_ns
        self.inventory.add(sig.signal_id, p, sign, closing, units, now_ns + pr.ttl_ns)
        self.signals += 1
        return sig

    @staticmethod
    def _legs(pr: _Pair, sign: int, units: int, px_a: float, px_b: float) -> tuple[SignalLeg, SignalLeg]:
        """Buying the spread (`sign` > 0) buys leg A and sells leg B; selling it, the reverse."""
        a, b = (_BUY, _SELL) if sign > 0 else (_SELL, _BUY)
        return (SignalLeg(instrument=pr.conv_a.instrument, side=a, qty=units * pr.cfg.ratio_a, limit_px=px_a),
                SignalLeg(instrument=pr.conv_b.instrument, side=b, qty=units * pr.cfg.ratio_b, limit_px=px_b))

    def signal_shape(self, pair: str, direction: Side, closing: bool) -> Signal:
        """A signal of `pair` in `direction`, every number zero: what its signals have in common."""
        pr = self._pairs[self.pair_index[pair]]
        return Signal(signal_id="", pair=pair, direction=direction, closing=closing,
                      legs=self._legs(pr, direction.sign, 0, 0.0, 0.0), spread=0.0, zscore=0.0, expiry_ns=0,
                      tick_recv_ns=0, signal_ns=0)

    def _suppress(self, p: int, category: str, detail: str) -> None:
        """Count a suppression and remember its reason; returns None so callers can `return` it."""
        self.suppressed[category] += 1
        self.last_reason[self.pairs[p]] = f"{category}: {detail}"
        return None

    def _kernel_detail(self, p: int, gate: Gate, leg: int, now_ns: int) -> str:
        pr = self._pairs[p]
        conv = pr.conv_a if leg == 0 else pr.conv_b
        i = pr.a if leg == 0 else pr.b
        name = conv.instrument
        if gate is Gate.NO_QUOTE or gate is Gate.STALE:
            return f"leg={name}"
        if gate is Gate.NO_FX:
            return f"leg={name} fx={conv.fx}"
        px = self.state.px
        if gate is Gate.BAD_BOOK:
            return f"leg={name} bid={px[i, K.PX_BID]:g} ask={px[i, K.PX_ASK]:g}"
        if gate is Gate.QUOTE_AGE:
            age = (now_ns - int(self.state.tm[i, K.TM_RECV])) / NS_PER_MS
            return f"leg={name} age_ms={age:.1f} max_ms={pr.cfg.max_quote_age_ms:g}"
        if gate is Gate.WARMUP:
            return f"ticks={int(self.state.ps[p, K.S_N])} need={pr.cfg.warmup_ticks}"
        dec = Decision(int(self.state.codes[p, K.C_DECISION]))
        buying = dec in (Decision.OPEN_BUY, Decision.CLOSE_BUY)
        if leg == 0:
            size = px[i, K.PX_ASK_SZ] if buying else px[i, K.PX_BID_SZ]
            need = pr.cfg.min_size * pr.cfg.ratio_a
        else:
            size = px[i, K.PX_BID_SZ] if buying else px[i, K.PX_ASK_SZ]
            need = pr.cfg.min_size * pr.cfg.ratio_b
        return f"leg={name} size={size:g} need={need:g}"

    # --- views ----------------------------------------------------------------

    def view(self, pair: str) -> PairView:
        """The pair's figures as of the latest evaluation that priced it."""
        p = self.pair_index[pair]
        out, ps = self.state.out, self.state.ps
        inv = self.inventory
        return PairView(pair=pair, buy=float(out[p, K.O_BUY]), sell=float(out[p, K.O_SELL]),
                        mid=float(out[p, K.O_MID]), mean=float(out[p, K.O_MEAN]), sd=float(out[p, K.O_SD]),
                        z=float(out[p, K.O_Z]), hedge=float(out[p, K.O_HEDGE]), ticks=int(ps[p, K.S_N]),
                        position=inv.position[p],
                        pending_buy=inv.pending_units(p, 1, False) + inv.pending_units(p, 1, True),
                        pending_sell=inv.pending_units(p, -1, False) + inv.pending_units(p, -1, True))

    def stats(self) -> dict[str, int]:
        """Counters for the heartbeat: updates, conflation, evaluations, signals, pending, per-gate suppressions."""
        inv = self.inventory
        out = {"quotes": self.book.quotes, "conflated": self.book.conflated, "unknown": self.book.unknown,
               "evaluations": self.evaluations, "signals": self.signals, "pending": len(inv.pending),
               "pending_expired": inv.expired, "trade_done_unmatched": inv.unmatched}
        out.update({f"suppressed.{k}": v for k, v in self.suppressed.items()})
        return out
