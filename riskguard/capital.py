"""The capital view per market: what `xmc capital` and the live view show.

Per account, in its own currency: equity, initial and maintenance margin, utilisation
(initial / equity), headroom (equity - initial) and, in the base currency, headroom too;
the margin-call line (maintenance x `risk.margin_call_buffer`: equity under it for
`margin_call_grace_ms` is a margin call) and the utilisation at which the account warns.
Then the desk's total in the base currency and the suggested transfer between accounts,
if one nears its threshold. Built from marginwatch's `MarginSnapshot`; pure.
"""

from __future__ import annotations

from typing import Callable

from bus.messages import AccountMargin, MarginSnapshot, RiskState
from configs.schema import RiskCfg

Rate = Callable[[str, str], "float | None"]  # (from ccy, to ccy) -> rate, None if unknown


def _row(a: AccountMargin, risk: RiskCfg, base: str, rate: Rate | None) -> dict:
    r = 1.0 if a.currency == base else (rate(a.currency, base) if rate is not None else None)
    call_line = a.maintenance * risk.margin_call_buffer
    return {
        "account": a.account, "currency": a.currency, "equity": round(a.equity, 2), "initial": round(a.initial, 2),
        "maintenance": round(a.maintenance, 2), "utilisation": round(a.utilisation, 4),
        "headroom": round(a.headroom, 2), "headroom_base": round(a.headroom * r, 2) if r is not None else None,
        "margin_call_line": round(call_line, 2), "above_call_line": round(a.equity - call_line, 2),
        "warn_utilisation": risk.warn_utilisation, "near_threshold": a.utilisation >= risk.warn_utilisation,
    }


def capital_view(snap: MarginSnapshot, risk: RiskCfg, rate: Rate | None = None, state: RiskState | None = None) -> dict:
    """The document `xmc capital --json` prints."""
    return {
        "base_currency": snap.base_currency,
        "accounts": [_row(a, risk, snap.base_currency, rate) for a in snap.accounts],
        "total": _row(snap.total, risk, snap.base_currency, rate),
        "margin_call": snap.margin_call,
        "suggested_transfer": snap.suggestion,
        "risk_state": state.state.value if state is not None else None,
        "ts_ns": snap.ts_ns,
    }
