"""What the workers of one ``ff-serve`` share about reloads: a small state directory (``STATE_DIR``).

    STATE_DIR/reloads.json        {"generation": 3, "all": 2, "indexes": {"tiny": 3}, "paths": {"tiny": "/new/tiny"}}
    STATE_DIR/workers/PID.json    what worker PID serves: per index its path, version and generation (or error)

A reload is published by bumping a generation: ``indexes[name]`` for one
index (``POST /v1/admin/reload`` naming it, maybe with a new path), ``all``
for every index (a reload without a name, or ``SIGHUP`` to the master). An
index's target generation is the larger of the two; a worker whose loaded
generation of an index is lower reloads it (from ``paths[name]``, else its
configured path) and then records what it serves in its own file. Writers
take an exclusive ``flock`` on ``STATE_DIR/lock`` and replace the file
atomically, so readers never see half a file. No Flask and nothing heavy is
imported here: the gunicorn master uses it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ranker.atomic import write_json_atomic

STATE_FILE = "reloads.json"
WORKERS_DIR = "workers"
LOCK_FILE = "lock"


@dataclass(frozen=True)
class ReloadState:
    """The published reloads: a counter, the generation of a reload of everything, per index, and new paths."""

    generation: int = 0
    all: int = 0
    indexes: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def target(self, name: str) -> int:
        """The generation index ``name`` must be loaded at."""
        return max(self.all, self.indexes.get(name, 0))

    def path(self, name: str, configured: Path) -> Path:
        """Where index ``name`` is now: the path of its latest reload, else its configured path."""
        return Path(self.paths[name]) if name in self.paths else configured

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "all": self.all, "indexes": self.indexes, "paths": self.paths}


class StateDir:
    """The state directory of one server (its master creates it empty, its workers share it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.workers_dir = self.path / WORKERS_DIR

    def create(self) -> StateDir:
        """Make the directory (and its ``workers/``) if needed; returns ``self``."""
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        return self

    def read(self) -> ReloadState:
        """The published reloads (none yet: generation 0)."""
        try:
            data = json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ReloadState()
        return ReloadState(int(data["generation"]), int(data["all"]), {k: int(v) for k, v in data["indexes"].items()},
                           dict(data["paths"]))

    def publish(self, names: list[str] | None, paths: dict[str, str] | None = None) -> ReloadState:
        """Publish a reload of ``names`` (``None``: every index) at a new generation, with their new ``paths``;
        returns the new state."""
        with self._locked():
            state = self.read()
            generation = state.generation + 1
            indexes = dict(state.indexes)
            if names is None:
                everything = generation
            else:
                everything = state.all
                indexes.update((name, generation) for name in names)
            new = ReloadState(generation, everything, indexes, {**state.paths, **(paths or {})})
            write_json_atomic(self.path / STATE_FILE, new.to_json())
        return new

    def write_worker(self, pid: int, status: dict[str, Any]) -> None:
        """Record what worker ``pid`` serves (``{name: {"path", "version", "generation", "error"}}``)."""
        write_json_atomic(self.workers_dir / f"{pid}.json", {"pid": pid, "indexes": status})

    def forget_worker(self, pid: int) -> None:
        """Drop the record of a worker that exited."""
        with contextlib.suppress(FileNotFoundError):
            (self.workers_dir / f"{pid}.json").unlink()

    def workers(self) -> list[dict[str, Any]]:
        """Every live worker's record, by process ID."""
        records = []
        for file in sorted(self.workers_dir.glob("*.json")):
            try:
                records.append(json.loads(file.read_text(encoding="utf-8")))
            except (FileNotFoundError, json.JSONDecodeError):  # a worker that just exited
                continue
        return sorted(records, key=lambda record: record["pid"])

    def wait(self, targets: dict[str, int], timeout: float, poll: float = 0.05) -> tuple[bool, list[dict[str, Any]]]:
        """Wait until every worker has loaded (or failed to load) each index of ``targets`` at its generation or a
        later one; returns whether they all did within ``timeout`` seconds, and the workers' records."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.workers()
            done = all(record["indexes"].get(name, {}).get("generation", 0) >= generation
                       for record in records for name, generation in targets.items())
            if done or time.monotonic() >= deadline:
                return done, records
            time.sleep(poll)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
