"""Entry point of one actor process: `python -m actors.run NAME CONFIG RUN_DIR`."""

from __future__ import annotations

import os
import sys

from actors.registry import actor_class
from actors.runtime import SCHED_REFUSED
from configs.load import ConfigInvalid, load_config


def realtime(priority: int) -> str | None:
    """Run this process SCHED_FIFO at `priority` (0: leave it alone), before any thread exists, so
    ZeroMQ's I/O threads inherit it; the reason if the system refused (no CAP_SYS_NICE, a
    container without it: the process runs as usual)."""
    if priority <= 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"REALTIME_UNAVAILABLE: priority={priority} error={exc.strerror}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m actors.run NAME CONFIG RUN_DIR", file=sys.stderr)
        return 2
    name, config, run_dir = argv
    try:
        cfg = load_config(config)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 2
    if name not in cfg.actors:
        print(f"actor {name!r} is not in {config}", file=sys.stderr)
        return 2
    nice = int(os.environ.get("XMC_NICE", "0") or 0)
    if nice > 0:
        os.nice(nice)
    cpus = os.environ.get("XMC_CPUS")
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    refused = realtime(int(os.environ.get("XMC_RT", "0") or 0))
    if refused:
        os.environ[SCHED_REFUSED] = refused  # the actor logs it (realtime_unavailable) once it has a log
    actor = actor_class(cfg.actors[name].kind)(name, cfg, run_dir)
    return actor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
