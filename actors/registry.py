"""Actor kinds by name, imported lazily so an actor process loads only its own code."""

from __future__ import annotations

import importlib

from actors.runtime import Actor

KINDS: dict[str, str] = {
    "simex": "actors.simex:SimexActor",
    "ingest": "actors.ingest:IngestActor",
    "trigger": "actors.trigger:TriggerActor",
    "executor": "actors.executor:ExecutorActor",
    "marginwatch": "actors.marginwatch:MarginWatchActor",
    "journal": "actors.journal:JournalActor",
}


def actor_class(kind: str) -> type[Actor]:
    module, _, cls = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)
