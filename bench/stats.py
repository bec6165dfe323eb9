"""Small statistics helpers for the benchmarks."""

from __future__ import annotations

from actors.tradebook import percentiles

__all__ = ["metric", "percentiles"]


def metric(value: float, unit: str, baseline: float | None = None, **extra: float) -> dict:
    """One entry of build/bench.json."""
    ratio = round(value / baseline, 3) if baseline else None
    return {"value": round(value, 3), "unit": unit, "baseline": None if baseline is None else round(baseline, 3),
            "ratio": ratio, **extra}
