"""Small statistics helpers for the benchmarks."""

from __future__ import annotations


def percentiles(values: list[int] | list[float]) -> dict[str, float]:
    """p50/p99/p99.9 by nearest rank."""
    s = sorted(values)
    if not s:
        return {"p50": 0.0, "p99": 0.0, "p999": 0.0}

    def at(q: float) -> float:
        return float(s[min(len(s) - 1, int(q * len(s)))])

    return {"p50": at(0.50), "p99": at(0.99), "p999": at(0.999)}


def metric(value: float, unit: str, baseline: float | None = None, **extra: float) -> dict:
    """One entry of build/bench.json."""
    ratio = round(value / baseline, 3) if baseline else None
    return {"value": round(value, 3), "unit": unit, "baseline": None if baseline is None else round(baseline, 3),
            "ratio": ratio, **extra}
