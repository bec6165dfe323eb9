"""Replay ingest benchmark (pure part): decode + normalise recorded market data in-process."""

from __future__ import annotations

import time
from pathlib import Path

from feeds.book import TopOfBook
from feeds.replay import CsvReplay, DbnReplay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "databento"
MBP1_FILE = DATA / "ESU4.glbx-mdp3.mbp-1.2024-07-01T2358.dbn.zst"


def replay_records(path: str | Path = MBP1_FILE, venue: str = "CME",
                   symbols: dict[str, str] | None = None) -> list[tuple[int, TopOfBook]]:
    """Every (recorded due time UTC ns, TopOfBook) of a DBN or CSV file, in file order.

    `TopOfBook.to_quote(recv_ns)` gives the bus `Quote` an ingest process publishes.
    """
    p = Path(path)
    adapter = CsvReplay(p, venue, symbols) if ".csv" in p.name else DbnReplay(p, venue, symbols)
    return list(adapter.records())


def bench_replay_decode(path: str | Path = MBP1_FILE, min_seconds: float = 1.5) -> dict:
    """Records/s decoded from the DBN file and normalised to a bus `Quote`, repeated for ~`min_seconds`."""
    adapter = DbnReplay(path, "CME")
    list(adapter.records())  # warm the OS cache and imports
    n = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < min_seconds:
        for due, tob in adapter.records():
            tob.to_quote(due)
            n += 1
        elapsed = time.perf_counter() - t0
    return {"replay_decode_per_s": {"value": n / elapsed, "unit": "per_s", "baseline": None, "ratio": None}}


if __name__ == "__main__":
    print(bench_replay_decode())
