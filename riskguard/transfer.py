"""Transfer suggestion: which move of cash between accounts restores margin headroom.

The account most in need (largest shortfall in the base currency) receives
from the account with the largest surplus. Shortfall of an account = initial
/ target - equity (the equity it lacks to sit at the target utilisation);
surplus = equity - initial / target (what it can give and stay at the target).
The amount is in the giving account's currency, rounded up to `round_to`
(down when the surplus does not allow it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec

from bus.messages import AccountMargin


class TransferSuggestion(msgspec.Struct, frozen=True, kw_only=True):
    src: str
    dst: str
    amount: float  # in `currency`, the source account's
    currency: str
    amount_dst: float  # what arrives, in `dst_currency`
    dst_currency: str
    covers: bool  # False: the best donor cannot cover the whole shortfall
    text: str  # "move 1,200,000 HKD from hk to cn"


def suggest_transfer(
    accounts: Sequence[AccountMargin],
    rate: Callable[[str, str], float],
    base: str,
    target: float,
    *,
    trigger: float | None = None,
    round_to: float = 1000.0,
) -> TransferSuggestion | None:
    """The transfer that brings the neediest account back to `target` utilisation, or None.

    `accounts` are in their own currencies; `rate(a, b)` gives units of b per
    unit of a (e.g. `FxTable.rate`; a KeyError skips the account). An account
    needs help once its utilisation is >= `trigger` (default `target`).
    """
    if target <= 0.0:
        raise ValueError("target utilisation must be > 0")
    trigger = target if trigger is None else trigger
    needy: list[tuple[float, AccountMargin, float]] = []  # (shortfall base, account, shortfall own ccy)
    donors: list[tuple[float, AccountMargin, float]] = []
    for a in accounts:
        try:
            to_base = rate(a.currency, base)
        except KeyError:
            continue
        line = a.initial / target
        if a.initial > 0.0 and a.utilisation >= trigger and line > a.equity:
            needy.append(((line - a.equity) * to_base, a, line - a.equity))
        elif a.equity > line:
            donors.append(((a.equity - line) * to_base, a, a.equity - line))
    if not needy or not donors:
        return None
    _, dst, short_dst = max(needy, key=lambda t: (t[0], t[1].account))
    candidates = [d for d in donors if d[1].account != dst.account]
    if not candidates:
        return None
    _, src, surplus = max(candidates, key=lambda t: (t[0], t[1].account))
    try:
        fx = rate(dst.currency, src.currency)
    except KeyError:
        return None
    need_src = short_dst * fx
    amount = math.ceil(need_src / round_to) * round_to
    if amount > surplus:
        amount = math.floor(surplus / round_to) * round_to
    if amount <= 0.0:
        return None
    return TransferSuggestion(
        src=src.account,
        dst=dst.account,
        amount=amount,
        currency=src.currency,
        amount_dst=amount / fx,
        dst_currency=dst.currency,
        covers=amount >= need_src,
        text=f"move {amount:,.0f} {src.currency} from {src.account} to {dst.account}",
    )
