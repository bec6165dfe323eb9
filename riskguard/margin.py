"""Margin models: per-contract fixed, percent of notional, and the scenario portfolio model.

Every instrument names its model (`InstrumentCfg.margin_model`):

- ``fixed``: |qty| x `margin_fixed` (per lot, instrument currency);
- ``percent``: |qty| x price x multiplier x `margin_pct`
  (HSI: 25,000 pts x HKD 50 x 10 % = HKD 125,000 per lot);
- ``scenario``: positions are grouped by (account, commodity) -- an instrument
  with no commodity is a group of its own -- and each group is charged its
  worst loss over the 16 scenarios of `riskguard.scenario`. Offsetting
  positions in a group net in the scan, so an intra-commodity (calendar)
  spread charge is added back: min(long lots, short lots) x the commodity's
  per-spread-lot charge (base currency; `calendar_charge`, default 0).

Inter-commodity spread credits (`RiskCfg.spread_credits`: a, b, rate) lower
the margin of a hedged pair: when a and b are held in opposite directions,
spreads are matched in the pair's ratio (from the `PairCfg` with those legs,
else 1:1), and each leg's charge is reduced by rate x its matched share. A
leg's charge is its model's margin (for a scenario leg, the scan risk of the
position alone). Credits are not given between two scenario legs of the same
group, whose hedge the scan already nets. Credits between legs held in
different accounts are given unless `cross_account_credits=False` (the
desk's consolidated view; a broker may not grant them).

Results are in the base currency: exchange margin x `RiskCfg.broker_addon`
is the initial margin (IM); maintenance = IM x `RiskCfg.maintenance_ratio`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import numpy as np

from configs.schema import Config, InstrumentCfg, RiskCfg
from riskguard.scenario import SCENARIO_MOVES, SCENARIO_WEIGHTS, scenario_grid


class MarginPosition(msgspec.Struct, frozen=True, kw_only=True):
    """One position to margin: signed lots at a mark price, with its FX into the base currency."""

    account: str
    instrument: str
    qty: int
    price: float  # mark, instrument currency per quoted unit
    fx_to_base: float  # base currency per unit of the instrument's currency


class SpreadCredit(msgspec.Struct, frozen=True, kw_only=True):
    """A credit of `rate` on the matched part of opposite positions in `a` and `b`."""

    a: str
    b: str
    rate: float
    ratio_a: int = 1
    ratio_b: int = 1


class PositionMargin(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    instrument: str
    model: str
    qty: int
    charge: float  # exchange margin of the position alone, base currency
    credit: float = 0.0  # spread credit granted on it, base currency
    group: str = ""  # scenario group "account/commodity"


class GroupMargin(msgspec.Struct, frozen=True, kw_only=True):
    """A scenario group: its scan risk, calendar charge, credits and resulting exchange margin."""

    account: str
    commodity: str
    scan_risk: float
    spread_lots: float
    calendar_charge: float
    credit: float
    margin: float
    worst_scenario: int  # 0-based row of the grid that set the scan risk


class AccountRequirement(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    initial: float  # base currency, after broker add-on
    maintenance: float  # base currency


class MarginResult(msgspec.Struct, frozen=True, kw_only=True):
    positions: tuple[PositionMargin, ...]
    groups: tuple[GroupMargin, ...]
    accounts: dict[str, AccountRequirement]
    initial: float  # all accounts, base currency
    maintenance: float

    def account(self, name: str) -> AccountRequirement:
        """Requirement of `name`; zero if it holds nothing."""
        return self.accounts.get(name) or AccountRequirement(account=name, initial=0.0, maintenance=0.0)


def fixed_margin(qty: int, per_lot: float) -> float:
    """Per-contract model, in the instrument's currency."""
    return abs(qty) * per_lot


def percent_margin(qty: int, price: float, multiplier: float, pct: float) -> float:
    """Percent-of-notional model, in the instrument's currency."""
    return abs(qty) * price * multiplier * pct


def credits_from_config(cfg: Config) -> list[SpreadCredit]:
    """`RiskCfg.spread_credits` with each pair's ratio taken from the `PairCfg` with those legs."""
    out = []
    for sc in cfg.risk.spread_credits:
        ra = rb = 1
        for p in cfg.pairs.values():
            if (p.leg_a, p.leg_b) == (sc.a, sc.b):
                ra, rb = p.ratio_a, p.ratio_b
                break
            if (p.leg_a, p.leg_b) == (sc.b, sc.a):
                ra, rb = p.ratio_b, p.ratio_a
                break
        out.append(SpreadCredit(a=sc.a, b=sc.b, rate=sc.rate, ratio_a=ra, ratio_b=rb))
    return out


class MarginCalculator:
    """Computes initial and maintenance margin of a set of positions, per account and in total."""

    def __init__(
        self,
        instruments: Mapping[str, InstrumentCfg],
        risk: RiskCfg,
        *,
        credits: Sequence[SpreadCredit] | None = None,
        calendar_charge: Mapping[str, float] | None = None,
        cross_account_credits: bool = True,
    ) -> None:
        """`credits` default to `risk.spread_credits` at 1:1; `calendar_charge` is per commodity."""
        self.instruments = dict(instruments)
        self.risk = risk
        if credits is None:
            credits = [SpreadCredit(a=c.a, b=c.b, rate=c.rate) for c in risk.spread_credits]
        self.credits = list(credits)
        self.calendar_charge = dict(calendar_charge or {})
        self.cross_account_credits = cross_account_credits

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        calendar_charge: Mapping[str, float] | None = None,
        cross_account_credits: bool = True,
    ) -> "MarginCalculator":
        return cls(
            cfg.instruments,
            cfg.risk,
            credits=credits_from_config(cfg),
            calendar_charge=calendar_charge,
            cross_account_credits=cross_account_credits,
        )

    def compute(self, positions: Sequence[MarginPosition]) -> MarginResult:
        """Margin of `positions` (flat ones ignored); raises KeyError on an unknown instrument."""
        pos = [p for p in positions if p.qty != 0]
        n = len(pos)
        insts = [self.instruments[p.instrument] for p in pos]
        charge = [0.0] * n
        group_of = [-1] * n
        group_keys: list[tuple[str, str]] = []
        gidx: dict[tuple[str, str], int] = {}
        scen: list[int] = []

        for i, (p, inst) in enumerate(zip(pos, insts)):
            if inst.margin_model == "fixed":
                charge[i] = fixed_margin(p.qty, inst.margin_fixed) * p.fx_to_base
            elif inst.margin_model == "percent":
                charge[i] = percent_margin(p.qty, p.price, inst.multiplier, inst.margin_pct) * p.fx_to_base
            else:
                key = (p.account, inst.commodity or f"@{p.instrument}")
                g = gidx.get(key)
                if g is None:
                    g = gidx[key] = len(group_keys)
                    group_keys.append(key)
                group_of[i] = g
                scen.append(i)

        ng = len(group_keys)
        if scen:
            loss, risk, pos_risk, long_lots, short_lots = scenario_grid(
                np.array([pos[i].qty for i in scen], dtype=np.float64),
                np.array([pos[i].price for i in scen], dtype=np.float64),
                np.array([insts[i].multiplier for i in scen], dtype=np.float64),
                np.array([pos[i].fx_to_base for i in scen], dtype=np.float64),
                np.array([insts[i].scan_range_pct for i in scen], dtype=np.float64),
                np.array([group_of[i] for i in scen], dtype=np.int64),
                ng,
                SCENARIO_MOVES,
                SCENARIO_WEIGHTS,
            )
            for j, i in enumerate(scen):
                charge[i] = float(pos_risk[j])

        credit = self._credits(pos, insts, charge, group_of)

        exch: dict[str, float] = {}
        out_pos = []
        for i, (p, inst) in enumerate(zip(pos, insts)):
            g = group_of[i]
            label = "" if g < 0 else f"{group_keys[g][0]}/{group_keys[g][1]}"
            out_pos.append(
                PositionMargin(
                    account=p.account, instrument=p.instrument, model=inst.margin_model,
                    qty=p.qty, charge=charge[i], credit=credit[i], group=label,
                )
            )
            if g < 0:
                exch[p.account] = exch.get(p.account, 0.0) + max(0.0, charge[i] - credit[i])

        out_groups = []
        for g, (acct, commodity) in enumerate(group_keys):
            spread = float(min(long_lots[g], short_lots[g]))
            cal = spread * self.calendar_charge.get(commodity, 0.0) if not commodity.startswith("@") else 0.0
            cr = sum(credit[i] for i in scen if group_of[i] == g)
            scan = float(risk[g])
            margin = max(0.0, scan + cal - cr)
            exch[acct] = exch.get(acct, 0.0) + margin
            out_groups.append(
                GroupMargin(
                    account=acct, commodity=commodity, scan_risk=scan, spread_lots=spread,
                    calendar_charge=cal, credit=cr, margin=margin,
                    worst_scenario=int(np.argmax(loss[g])),
                )
            )

        addon, mratio = self.risk.broker_addon, self.risk.maintenance_ratio
        accounts = {
            a: AccountRequirement(account=a, initial=v * addon, maintenance=v * addon * mratio)
            for a, v in exch.items()
        }
        return MarginResult(
            positions=tuple(out_pos),
            groups=tuple(out_groups),
            accounts=accounts,
            initial=sum(r.initial for r in accounts.values()),
            maintenance=sum(r.maintenance for r in accounts.values()),
        )

    def _credits(
        self,
        pos: list[MarginPosition],
        insts: list[InstrumentCfg],
        charge: list[float],
        group_of: list[int],
    ) -> list[float]:
        """Spread credit per position; each lot is matched at most once across all credits."""
        credit = [0.0] * len(pos)
        free = [float(abs(p.qty)) for p in pos]
        by_inst: dict[str, list[int]] = {}
        for i, p in enumerate(pos):
            by_inst.setdefault(p.instrument, []).append(i)
        for sc in self.credits:
            for i in by_inst.get(sc.a, ()):
                for j in by_inst.get(sc.b, ()):
                    if pos[i].qty * pos[j].qty >= 0:
                        continue
                    if not self.cross_account_credits and pos[i].account != pos[j].account:
                        continue
                    if group_of[i] >= 0 and group_of[i] == group_of[j]:
                        continue
                    spreads = min(free[i] / sc.ratio_a, free[j] / sc.ratio_b)
                    if spreads <= 0.0:
                        continue
                    for k, lots in ((i, spreads * sc.ratio_a), (j, spreads * sc.ratio_b)):
                        credit[k] += sc.rate * charge[k] * lots / abs(pos[k].qty)
                        free[k] -= lots
        return credit
