"""Pure risk logic: pre-trade limits, FX, ledger, margin models, risk state, transfer suggestion.

Modules: `limits` (PreTradeLimits), `fx` (FxTable), `ledger` (Ledger), `margin`
(MarginCalculator) over the numba grid in `scenario`, `state`
(RiskStateMachine, MarginCallLatch, bus message builders), `transfer`
(suggest_transfer), and `watch` (MarginWatch, the marginwatch actor's core).
Nothing here opens a socket; importing the package imports no submodule.
"""
