"""Entry point of one actor process: `python -m actors.run NAME CONFIG RUN_DIR`."""

from __future__ import annotations

import os
import sys

from actors.registry import actor_class
from actors.runtime import SCHED_REFUSED
from configs.load import ConfigInvalid, load_config


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
    rt = int(os.environ.get("XMC_RT", "0") or 0)
    if rt > 0:  # before any thread exists: ZeroMQ's I/O threads inherit the policy
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt))
        except OSError as exc:  # no CAP_SYS_NICE (a container without it): run as usual, and say so
            os.environ[SCHED_REFUSED] = f"REALTIME_UNAVAILABLE: priority={rt} error={exc.strerror}"
    actor = actor_class(cfg.actors[name].kind)(name, cfg, run_dir)
    return actor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
