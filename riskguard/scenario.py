"""The 16-scenario portfolio grid, in the spirit of SPAN, as one batch numba kernel.

Scenarios (price move as a fraction of the instrument's scan range, weight):

==  =========  ======  ======
 #  move       vol     weight
==  =========  ======  ======
 1   0         up      1
 2   0         down    1
 3  +1/3       up      1
 4  +1/3       down    1
 5  -1/3       up      1
 6  -1/3       down    1
 7  +2/3       up      1
 8  +2/3       down    1
 9  -2/3       up      1
10  -2/3       down    1
11  +3/3       up      1
12  +3/3       down    1
13  -3/3       up      1
14  -3/3       down    1
15  +3 x range  --     0.35  (extreme move, 35 % covered)
16  -3 x range  --     0.35
==  =========  ======  ======

Futures have no volatility exposure, so each vol-up/vol-down couple gives the
same loss; the rows are kept so the grid has SPAN's shape. Cross-instrument
moves: every position of one group moves in the same direction by the same
fraction of its *own* scan range (scenario 3 moves each member up by 1/3 of
its range), so offsetting positions in a group net. A group's scan risk is
its worst weighted loss over the 16 scenarios, floored at 0. The worst case of
a lone futures position is the extreme move: 0.35 x 3 = 1.05 scan ranges.

Inputs are parallel arrays, one row per position: signed qty (lots), price,
multiplier, fx_to_base, scan_range (fraction of price) and group id
(0..n_groups-1). Outputs are in the base currency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

N_SCENARIOS = 16
EXTREME_MULTIPLE = 3.0
EXTREME_WEIGHT = 0.35

_THIRDS = (0.0, 1.0 / 3.0, -1.0 / 3.0, 2.0 / 3.0, -2.0 / 3.0, 1.0, -1.0)
SCENARIO_MOVES = np.array(
    [m for m in _THIRDS for _ in (0, 1)] + [EXTREME_MULTIPLE, -EXTREME_MULTIPLE], dtype=np.float64
)
SCENARIO_VOL = np.array([1, -1] * 7 + [0, 0], dtype=np.int64)  # +1 up, -1 down, 0 unchanged
SCENARIO_WEIGHTS = np.array([1.0] * 14 + [EXTREME_WEIGHT] * 2, dtype=np.float64)


def scenario_names() -> list[str]:
    """Human-readable name of each of the 16 scenarios, in grid order."""
    out = []
    for m, v, w in zip(SCENARIO_MOVES, SCENARIO_VOL, SCENARIO_WEIGHTS):
        if w < 1.0:
            out.append(f"price {m:+.0f}x range, {w:.0%} cover")
        else:
            out.append(f"price {m:+.2f} range, vol {'up' if v > 0 else 'down'}")
    return out


@njit(cache=True)
def scenario_grid(
    qty: np.ndarray,
    price: np.ndarray,
    mult: np.ndarray,
    fx: np.ndarray,
    scan: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    moves: np.ndarray,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group_loss[g, s], group_risk[g], position_risk[i], long_lots[g], short_lots[g]).

    `group_loss` is the weighted loss (positive = money lost) of each group in
    each scenario; `group_risk` its worst, floored at 0; `position_risk` the
    worst weighted loss of each position alone.
    """
    n = qty.shape[0]
    ns = moves.shape[0]
    loss = np.zeros((n_groups, ns))
    pos_risk = np.zeros(n)
    long_lots = np.zeros(n_groups)
    short_lots = np.zeros(n_groups)
    for i in range(n):
        g = group[i]
        exposure = qty[i] * price[i] * mult[i] * fx[i] * scan[i]
        worst = 0.0
        for s in range(ns):
            lo = -exposure * moves[s] * weights[s]
            loss[g, s] += lo
            if lo > worst:
                worst = lo
        pos_risk[i] = worst
        if qty[i] > 0.0:
            long_lots[g] += qty[i]
        else:
            short_lots[g] -= qty[i]
    risk = np.zeros(n_groups)
    for g in range(n_groups):
        worst = 0.0
        for s in range(ns):
            if loss[g, s] > worst:
                worst = loss[g, s]
        risk[g] = worst
    return loss, risk, pos_risk, long_lots, short_lots


def scenario_grid_py(
    qty: Sequence[float],
    price: Sequence[float],
    mult: Sequence[float],
    fx: Sequence[float],
    scan: Sequence[float],
    group: Sequence[int],
    n_groups: int,
    moves: Sequence[float],
    weights: Sequence[float],
) -> tuple[list[list[float]], list[float], list[float], list[float], list[float]]:
    """Pure-Python reference of `scenario_grid` (tests and benchmark baseline)."""
    ns = len(moves)
    loss = [[0.0] * ns for _ in range(n_groups)]
    pos_risk = []
    long_lots = [0.0] * n_groups
    short_lots = [0.0] * n_groups
    for q, p, m, f, r, g in zip(qty, price, mult, fx, scan, group):
        exposure = q * p * m * f * r
        row = loss[g]
        worst = 0.0
        for s in range(ns):
            lo = -exposure * moves[s] * weights[s]
            row[s] += lo
            worst = max(worst, lo)
        pos_risk.append(worst)
        if q > 0:
            long_lots[g] += q
        else:
            short_lots[g] -= q
    risk = [max(0.0, max(row)) for row in loss]
    return loss, risk, pos_risk, long_lots, short_lots


def warm_up() -> None:
    """Compile (or load from cache) the kernel before the actor reports ready."""
    one = np.ones(1)
    scenario_grid(one, one, one, one, one, np.zeros(1, dtype=np.int64), 1, SCENARIO_MOVES, SCENARIO_WEIGHTS)
