"""`make bench`: run every benchmark section, print one table, write build/bench.json.

    python -m bench.run                       # everything (~3-4 min on 2 vCPUs)
    python -m bench.run --only bus,trigger    # a subset, in the usual order
    python -m bench.run --quick               # smaller sizes, for a smoke run

build/bench.json is one object {metric_name: {"value", "unit", "baseline", "ratio", ...}} as
CONTRACTS.md specifies; with --only it holds only the sections that ran. A section that fails
is reported and skipped (its metrics are absent) and the exit code is 1.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import click
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench.json"
CORE = ("value", "unit", "baseline", "ratio")

def _call(module: str, fn: str, **sizes: object) -> Callable[[], dict]:
    return lambda: getattr(importlib.import_module(module), fn)(**sizes)


def sections(quick: bool) -> dict[str, Callable[[], dict] | None]:
    """Section name -> benchmark (None: not available in this checkout), in run order."""
    q = quick
    out: dict[str, Callable[[], dict] | None] = {
        "bus": _call("bench.bus", "bench_bus", n=2000 if q else 6000, reps=1 if q else 3),
        "bus_tcp": _call("bench.bus", "bench_bus_tcp", n=2000 if q else 6000, reps=1 if q else 3),
        "trigger": _call("bench.trigger", "bench_trigger"),
        "margin": _call("bench.margin", "bench_margin"),
        "ingest": _call("bench.ingest", "bench_replay_decode", min_seconds=0.5 if q else 1.5),
        "executor": _call("bench.executor", "bench_executor"),
        "stream": _call("bench.executor", "bench_stream", events=20_000 if q else 50_000, reps=5 if q else 7),
        "journal": _call("bench.system", "bench_journal", n=20_000 if q else 60_000),
        "ingest_replay": _call("bench.system", "bench_ingest_replay", n=10_000 if q else 50_000),
        "trigger_burst": _call("bench.system", "bench_trigger_burst", n=50_000 if q else 200_000),
        "tick_to_trade": _call("bench.system", "bench_demo", seconds=8.0 if q else 25.0, chain_seconds=3.0 if q else 8.0),
        "risk_state": _call("bench.system", "bench_risk_state", crossings=6 if q else 20),
        "fix": _call("bench.fix", "bench_fix", n=200 if q else 600, reps=2 if q else 3, map_n=5000 if q else 20_000),
    }
    if importlib.util.find_spec("bench.executor") is None:
        out["executor"] = out["stream"] = None
    return out


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def table(results: dict[str, dict]) -> Table:
    t = Table(title="xmc bench", header_style="bold")
    for col, just in (("name", "left"), ("value", "right"), ("unit", "left"), ("baseline", "right"),
                      ("ratio", "right")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    t.add_column("extra", overflow="fold")
    for name, m in results.items():
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in m.items() if k not in CORE)
        ratio = m.get("ratio")
        t.add_row(name, _fmt(m["value"]), m["unit"], _fmt(m.get("baseline")),
                  "-" if ratio is None else f"{ratio:.3f}", extra)
    return t


def _clean(m: dict) -> dict:
    """One metric in the contract's shape: plain floats, `ratio = value / baseline`."""
    value = float(m["value"])
    baseline = None if m.get("baseline") is None else float(m["baseline"])
    out = {"value": value, "unit": str(m["unit"]), "baseline": baseline,
           "ratio": value / baseline if baseline else None}
    out.update({k: v for k, v in m.items() if k not in CORE})
    return out


@click.command()
@click.option("--only", default="", help=f"Comma-separated sections to run (default: all): {', '.join(sections(False))}.")
@click.option("--quick", is_flag=True, help="Smaller sizes and shorter runs.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=OUT, show_default=True)
def main(only: str, quick: bool, out_path: Path) -> None:
    """Run the benchmarks, print the table, write the JSON."""
    console = Console(width=None if sys.stdout.isatty() else 170)
    err = Console(stderr=True)
    available = sections(quick)
    wanted = [s.strip() for s in only.split(",") if s.strip()] or list(available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise click.UsageError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(available)}")
    results: dict[str, dict] = {}
    failed: list[str] = []
    t_all = time.monotonic()
    for name in [s for s in available if s in wanted]:
        fn = available[name]
        if fn is None:
            err.print(f"[yellow]skip {name}: not in this checkout[/]")
            continue
        err.print(f"[bold]{name}[/] ...", end=" ")
        t0 = time.monotonic()
        try:
            got = fn()
        except Exception:
            failed.append(name)
            err.print(f"[red]FAILED after {time.monotonic() - t0:.1f}s[/]")
            err.print(traceback.format_exc(limit=6), markup=False, highlight=False)
            continue
        results.update({k: _clean(v) for k, v in got.items()})
        err.print(f"{time.monotonic() - t0:.1f}s")
    console.print(table(results))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    console.print(f"wrote {out_path} ({len(results)} metrics, {time.monotonic() - t_all:.0f}s)")
    if failed:
        console.print(f"[red]failed sections: {', '.join(failed)}[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
