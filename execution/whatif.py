"""Pre-trade margin what-if: the utilisation an account would reach if a pair trade's legs filled.

Same margin models, spread credits and FX as marginwatch (`riskguard.margin`), over the
engine's own position book (`execution.positions`, built from the execution stream), at the
latest price the engine knows per instrument (a fill, the touch, the latest signal's limit),
with every entry order of the other open trades counted as if it filled,
against each account's equity as marginwatch last published it (`MarginSnapshot`; the
configured balance until then). The verdict per (pair, direction, size) is cached and the
cache is dropped whenever an input changes (a fill moved the book, a new snapshot, a new
price beyond `PRICE_TOLERANCE`, an FX rate); `prime` recomputes the sizes asked before off
the hot path, so a signal normally finds its verdict ready.

A refusal reads ``MARGIN_WHATIF: account=<name> utilisation_after=<u> limit=<l>``. Only
opening trades are asked; unwinds and closing trades are never refused for margin. An input
that cannot be known (no price yet, no FX rate) leaves that leg out of the sum: the check
never blocks for want of data, marginwatch's own FX staleness rule covers that case.
"""

from __future__ import annotations

from configs.schema import Config
from execution.pairtrade import PairParams
from execution.positions import PositionBook
from bus.messages import MarginSnapshot
from riskguard.fx import FxTable
from riskguard.margin import MarginCalculator, MarginPosition
from riskguard.state import utilisation

PRICE_TOLERANCE = 0.002  # a mark, rate or equity that moved less than this (relative) keeps the verdicts

Key = tuple[str, int, int, int]  # pair, direction sign, lots of leg A, lots of leg B


class MarginWhatIf:
    """Verdicts on opening pair trades; pure (feed it inputs, ask `check`)."""

    def __init__(self, cfg: Config, params: dict[str, PairParams]) -> None:
        self.params = params
        self.base = cfg.run.base_currency
        self.limit = cfg.risk.limits.whatif_utilisation
        self.currency = {k: i.currency for k, i in cfg.instruments.items()}
        self.account_ccy = {n: a.currency for n, a in cfg.accounts.items()}
        self.equity = {n: a.balance for n, a in cfg.accounts.items()}  # account currency
        self.calc = MarginCalculator.from_config(cfg, calendar_charge=cfg.risk.calendar_charges,
                                                 cross_account_credits=cfg.risk.cross_account_credits)
        self.price: dict[str, float] = {}
        self.fx_mid: dict[str, float] = {}
        self.pending: dict[tuple[str, str], int] = {}  # (account, instrument) -> lots other entries may add
        self._cache: dict[Key, str | None] = {}
        self._asked: set[Key] = set()
        self.computed = 0

    # --- inputs ---------------------------------------------------------------------

    def on_snapshot(self, snap: MarginSnapshot) -> None:
        """Each account's equity (it moves with every mark: only a move beyond the tolerance counts)."""
        for a in snap.accounts:
            old = self.equity.get(a.account)
            if old is not None and abs(a.equity - old) > PRICE_TOLERANCE * abs(old):
                self.equity[a.account] = a.equity
                self._cache.clear()

    def on_price(self, instrument: str, px: float) -> None:
        old = self.price.get(instrument)
        if px > 0 and (old is None or abs(px - old) > PRICE_TOLERANCE * old):
            self.price[instrument] = px
            self._cache.clear()

    def on_fx(self, pair: str, mid: float) -> None:
        old = self.fx_mid.get(pair)
        if mid > 0 and (old is None or abs(mid - old) > PRICE_TOLERANCE * old):
            self.fx_mid[pair] = mid
            self._cache.clear()

    def set_pending(self, pending: dict[tuple[str, str], int]) -> None:
        """What the entries of trades in flight would add if they filled (they count as filled)."""
        if pending != self.pending:
            self.pending = pending
            self._cache.clear()

    def invalidate(self) -> None:
        """The book or FX moved: every verdict is computed again."""
        self._cache.clear()

    # --- verdicts -------------------------------------------------------------------

    def check(self, pair: str, sign: int, qty_a: int, qty_b: int, book: PositionBook, fx: FxTable) -> str | None:
        """None if an opening trade of `pair` (`sign` +1: buy leg A, sell leg B) may go; else why not."""
        key = (pair, sign, qty_a, qty_b)
        self._asked.add(key)
        if key not in self._cache:
            self._cache[key] = self._verdict(key, book, fx)
        return self._cache[key]

    def prime(self, book: PositionBook, fx: FxTable) -> None:
        """Recompute every verdict asked before that the last input change dropped."""
        for key in self._asked:
            if key not in self._cache:
                self._cache[key] = self._verdict(key, book, fx)

    def utilisation_after(self, pair: str, sign: int, qty_a: int, qty_b: int, book: PositionBook,
                          fx: FxTable) -> dict[str, float]:
        """Each account's utilisation (initial margin / equity) with the trade's legs filled."""
        p = self.params[pair]
        lots = {(acct, inst): book.lots(acct, inst) for acct, inst in book.holdings()}
        for k, q in self.pending.items():
            lots[k] = lots.get(k, 0) + q
        for leg, q in ((p.a, sign * qty_a), (p.b, -sign * qty_b)):
            lots[(leg.account, leg.instrument)] = lots.get((leg.account, leg.instrument), 0) + q
        positions = []
        for (acct, inst), q in lots.items():
            px = self.price.get(inst)
            rate = fx.try_rate(self.currency[inst], self.base) if inst in self.currency else None
            if q and px is not None and rate is not None:
                positions.append(MarginPosition(account=acct, instrument=inst, qty=q, price=px, fx_to_base=rate))
        result = self.calc.compute(positions)
        self.computed += 1
        out: dict[str, float] = {}
        for acct in {p.a.account, p.b.account}:
            ccy = self.account_ccy.get(acct, self.base)
            im_base = result.account(acct).initial
            rate = 1.0 if ccy == self.base else fx.try_rate(self.base, ccy)
            if rate is None:
                continue
            out[acct] = utilisation(im_base * rate, self.equity.get(acct, 0.0))
        return out

    def _verdict(self, key: Key, book: PositionBook, fx: FxTable) -> str | None:
        pair, sign, qa, qb = key
        over = [(util, acct) for acct, util in self.utilisation_after(pair, sign, qa, qb, book, fx).items()
                if util > self.limit]
        if not over:
            return None
        util, acct = max(over)  # the account furthest past the limit
        return f"MARGIN_WHATIF: account={acct} utilisation_after={util:.4f} limit={self.limit:g}"
