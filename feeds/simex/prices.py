"""Seeded price process of the simulated venues.

Every instrument with a ``sim`` block on a venue of kind ``sim`` gets a
random walk of its mid (log steps of ``vol_bp`` plus ``drift_bp`` per
step), quoted as a top of book ``spread_ticks`` wide on the tick grid, with
sizes drawn around ``size``. Each instrument emits once per ``interval_ms``
of venue time on a fixed grid from ``start_ns``; `step(t)` returns every
quote due up to ``t`` (catching up if the caller was late), so the path is
a function of the seed and the grid only, never of how often `step` is
called.

Pairs: the outer leg (``leg_b``) is not walked on its own. Its mid is the
inner leg's (``leg_a``) converted into the pair's currency and unit, times
``1 + basis``, converted back into leg_b's currency and unit (leg_b's own
``start`` and ``vol_bp`` are unused; its ``drift_bp`` trends it away from
the pair). The basis (in
bp) is an AR(1) stepped at each of leg_b's quotes::

    b' = b + reversion * (sim_basis_bp - b) + sim_basis_vol_bp * N(0, 1) [+ jump]

A jump puts the basis ``jump_sigmas`` stationary standard deviations from
its mean (random sign); one happens on average every ``jump_every_s`` of
venue time so that the spread
visibly crosses a z-score trigger of ~2 within seconds. A leg_b that is the
outer leg of several pairs follows the first pair by name; a leg_b whose
inner leg or FX rate is not simulated walks on its own (and its ``start``
is used). FX instruments always walk on their own. Conversions use the same
FX lookup as the config checker: ``CCY1CCY2`` or its inverse.

Trading hours are not applied here (quotes flow around the clock); the
venue rejects orders outside its hours.

Every instrument and every pair basis has its own random stream derived
from (seed, name), so adding an instrument does not change the others'
paths, and every simex process that simulates a subset of the venues sees
the same prices.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable

from configs.schema import Config, InstrumentCfg, PairCfg, SimPriceCfg
from configs.units import unit_factor
from feeds.book import TopOfBook
from feeds.simex.seeds import sub_rng

DEFAULT_JUMP_EVERY_S = 3.0
DEFAULT_JUMP_SIGMAS = 4.0


class _Inst:
    __slots__ = (
        "key", "cfg", "sim", "venue", "tick", "ndigits", "interval_ns", "rng", "mid", "drift_bp",
        "offset_bp", "basis", "emit", "order",
    )

    def __init__(self, key: str, cfg: InstrumentCfg, sim: SimPriceCfg, seed: int, emit: bool) -> None:
        self.key = key
        self.cfg = cfg
        self.sim = sim
        self.venue = cfg.venue
        self.tick = cfg.tick
        self.ndigits = _ndigits(cfg.tick)
        self.interval_ns = max(1, round(sim.interval_ms * 1e6))
        self.rng = sub_rng(seed, "price", key)
        self.mid = float(sim.start)
        self.drift_bp = float(sim.drift_bp)
        self.offset_bp = 0.0  # a derived leg's own drift and shocks, accumulated
        self.basis: _Basis | None = None
        self.emit = emit
        self.order = 0


class _Basis:
    __slots__ = ("pair", "a", "b", "mu", "k", "vol", "value", "jump_p", "jump_bp", "rng", "conv_a", "conv_b")

    def __init__(self, name: str, pc: PairCfg, a: _Inst, b: _Inst, seed: int, jump_every_s: float,
                 jump_sigmas: float, conv_a: "_Conv", conv_b: "_Conv") -> None:
        self.pair = name
        self.a = a
        self.b = b
        self.mu = pc.sim_basis_bp
        self.k = pc.sim_basis_reversion
        self.vol = pc.sim_basis_vol_bp
        self.value = pc.sim_basis_bp
        self.rng = sub_rng(seed, "basis", name)
        self.jump_p = 0.0 if jump_every_s <= 0 else min(1.0, b.interval_ns / (jump_every_s * 1e9))
        self.jump_bp = jump_sigmas * stationary_sd_bp(self.vol, self.k)
        self.conv_a = conv_a
        self.conv_b = conv_b


class _Conv:
    """Factor taking an instrument's price into a pair's currency and unit (FX read live)."""

    __slots__ = ("fx", "invert", "unit")

    def __init__(self, fx: _Inst | None, invert: bool, unit: float) -> None:
        self.fx = fx
        self.invert = invert
        self.unit = unit

    def factor(self) -> float:
        if self.fx is None:
            return self.unit
        rate = self.fx.mid
        return self.unit / rate if self.invert else self.unit * rate


def stationary_sd_bp(vol_bp: float, reversion: float) -> float:
    """Stationary standard deviation of the AR(1) basis, bp (10 x vol without reversion)."""
    if reversion <= 0.0:
        return 10.0 * vol_bp
    phi = 1.0 - reversion
    return vol_bp / math.sqrt(max(1e-12, 1.0 - phi * phi))


def _ndigits(tick: float) -> int:
    text = f"{tick:.12f}".rstrip("0")
    return max(0, len(text.split(".")[1]) if "." in text else 0) + 2


class PriceProcess:
    """Top-of-book quotes of the simulated instruments, driven by the caller's venue clock.

    `venues`: the venues whose quotes `step` returns (None: every sim venue);
    every sim instrument is simulated regardless, so prices agree across
    processes. `seed` defaults to ``cfg.run.seed``; `start_ns` anchors the
    quote grid (None: the first `step` time).
    """

    def __init__(
        self,
        cfg: Config,
        venues: Iterable[str] | None = None,
        *,
        seed: int | None = None,
        start_ns: int | None = None,
        jump_every_s: float = DEFAULT_JUMP_EVERY_S,
        jump_sigmas: float = DEFAULT_JUMP_SIGMAS,
    ) -> None:
        self._seed = cfg.run.seed if seed is None else seed
        sim_venues = cfg.simulated_venues()
        wanted = sim_venues if venues is None else set(venues) & sim_venues
        self._insts: dict[str, _Inst] = {}
        for key, ic in sorted(cfg.active_instruments().items()):
            if ic.venue in sim_venues and ic.sim is not None:
                self._insts[key] = _Inst(key, ic, ic.sim, self._seed, ic.venue in wanted)
        self._bases: dict[str, _Basis] = {}
        for name, pc in sorted(cfg.pairs.items()):
            b = self._insts.get(pc.leg_b)
            a = self._insts.get(pc.leg_a)
            if a is None or b is None or b.cfg.fx or b.basis is not None or a is b:
                continue
            conv_a = self._conv(a.cfg, pc)
            conv_b = self._conv(b.cfg, pc)
            if conv_a is None or conv_b is None or self._depends_on(a, b):
                continue
            basis = _Basis(name, pc, a, b, self._seed, jump_every_s, jump_sigmas, conv_a, conv_b)
            b.basis = basis
            self._bases[name] = basis
            b.mid = self._derived_mid(b)
        self._order_instruments()
        self._seq: dict[str, int] = {v: 0 for v in sim_venues}
        self._start_ns = start_ns
        self._heap: list[tuple[int, int, str]] = []
        if start_ns is not None:
            self._arm(start_ns)

    # --- public API ----------------------------------------------------------

    @property
    def instruments(self) -> list[str]:
        """Keys of the instruments whose quotes `step` returns."""
        return [k for k, i in self._insts.items() if i.emit]

    @property
    def pairs(self) -> list[str]:
        """Pairs whose outer leg is driven by a simulated basis."""
        return list(self._bases)

    def step(self, venue_time_ns: int) -> list[TopOfBook]:
        """Every quote due at or before `venue_time_ns`, in venue-time order."""
        if self._start_ns is None:
            self._start_ns = venue_time_ns
            self._arm(venue_time_ns)
        out: list[TopOfBook] = []
        heap = self._heap
        while heap and heap[0][0] <= venue_time_ns:
            ts, order, key = heap[0]
            inst = self._insts[key]
            tob = self._advance(inst, ts)
            heapq.heapreplace(heap, (ts + inst.interval_ns, order, key))
            if inst.emit:
                out.append(tob)
        return out

    def next_due_ns(self) -> int | None:
        """Venue time of the next quote (None before the first `step` without `start_ns`)."""
        return self._heap[0][0] if self._heap else None

    def set_drift(self, instrument: str, drift_bp: float) -> None:
        """Drift per step from now on; on an outer leg it trends the leg away from its pair."""
        self._inst(instrument).drift_bp = float(drift_bp)

    def shock(self, instrument: str, move_bp: float) -> None:
        """Move an instrument's mid at once by `move_bp` (an outer leg moves alone)."""
        inst = self._inst(instrument)
        if inst.basis is not None:
            inst.offset_bp += move_bp
        else:
            inst.mid *= math.exp(move_bp / 1e4)

    def set_basis(self, pair: str, basis_bp: float) -> None:
        """Force a pair's basis (bp); it mean-reverts from there."""
        if pair not in self._bases:
            raise KeyError(f"pair {pair!r} has no simulated basis (have: {', '.join(self._bases) or 'none'})")
        self._bases[pair].value = float(basis_bp)

    def basis_bp(self, pair: str) -> float:
        """Current basis of a pair, bp (the latent value, before tick rounding)."""
        return self._bases[pair].value

    def mid(self, instrument: str) -> float:
        """Current latent mid of an instrument (before tick rounding)."""
        return self._inst(instrument).mid

    # --- internals -----------------------------------------------------------

    def _inst(self, key: str) -> _Inst:
        try:
            return self._insts[key]
        except KeyError:
            raise KeyError(f"instrument {key!r} is not simulated (have: {', '.join(self._insts)})") from None

    def _conv(self, ic: InstrumentCfg, pc: PairCfg) -> _Conv | None:
        unit = unit_factor(ic.unit, pc.unit)
        if unit is None:
            return None
        if ic.currency == pc.currency:
            return _Conv(None, False, unit)
        direct = self._insts.get(f"{ic.currency}{pc.currency}")
        if direct is not None and direct.cfg.fx:
            return _Conv(direct, False, unit)
        inverse = self._insts.get(f"{pc.currency}{ic.currency}")
        if inverse is not None and inverse.cfg.fx:
            return _Conv(inverse, True, unit)
        return None

    def _depends_on(self, a: _Inst, b: _Inst) -> bool:
        """True if `a`'s price is (transitively) derived from `b`: a cycle would form."""
        cur: _Inst | None = a
        while cur is not None and cur.basis is not None:
            if cur.basis.a is b:
                return True
            cur = cur.basis.a
        return False

    def _order_instruments(self) -> None:
        """FX first, then own walks, then derived legs after their inner legs."""
        def depth(i: _Inst) -> int:
            d = 0
            while i.basis is not None:
                d += 1
                i = i.basis.a
            return d

        ranked = sorted(self._insts.values(), key=lambda i: (not i.cfg.fx, depth(i), i.key))
        for n, inst in enumerate(ranked):
            inst.order = n

    def _arm(self, start_ns: int) -> None:
        self._heap = [(start_ns, i.order, i.key) for i in self._insts.values()]
        heapq.heapify(self._heap)

    def _derived_mid(self, inst: _Inst) -> float:
        bs = inst.basis
        assert bs is not None
        value_a = bs.a.mid * bs.conv_a.factor()
        return value_a * (1.0 + bs.value / 1e4) / bs.conv_b.factor() * math.exp(inst.offset_bp / 1e4)

    def _advance(self, inst: _Inst, ts: int) -> TopOfBook:
        rng = inst.rng
        sim = inst.sim
        bs = inst.basis
        if bs is None:
            inst.mid *= math.exp((inst.drift_bp + sim.vol_bp * rng.gauss(0.0, 1.0)) / 1e4)
        else:
            self._step_basis(bs)
            inst.offset_bp += inst.drift_bp
            inst.mid = self._derived_mid(inst)
        u_bid = rng.random()
        u_ask = rng.random()
        tick = inst.tick
        spread = sim.spread_ticks
        bid_ticks = max(1, round(inst.mid / tick - spread / 2.0))
        seq = self._seq[inst.venue] + 1
        self._seq[inst.venue] = seq
        return TopOfBook(
            venue=inst.venue,
            instrument=inst.key,
            symbol=inst.cfg.symbol,
            bid=round(bid_ticks * tick, inst.ndigits),
            ask=round((bid_ticks + spread) * tick, inst.ndigits),
            bid_size=float(max(1, round(sim.size * (0.5 + u_bid)))),
            ask_size=float(max(1, round(sim.size * (0.5 + u_ask)))),
            ts_ns=ts,
            seq=seq,
            fx=inst.cfg.fx,
        )

    @staticmethod
    def _step_basis(bs: _Basis) -> None:
        rng: random.Random = bs.rng
        z = rng.gauss(0.0, 1.0)
        u_jump = rng.random()
        u_sign = rng.random()
        bs.value += bs.k * (bs.mu - bs.value) + bs.vol * z
        if u_jump < bs.jump_p:
            bs.value = bs.mu + (bs.jump_bp if u_sign < 0.5 else -bs.jump_bp)
