"""Run ``ff-serve`` in a child process on a free loopback port, for tests, the load test and scripts.

    with LocalServer({"tiny": "work/tiny"}, workers=2, threads=2) as server:
        urllib.request.urlopen(server.url + "/v1/search?q=pasta")
    print(server.log)            # what the server wrote to stderr, kept after it stopped

The server binds 127.0.0.1 port 0, so the kernel picks a free port (no race with
other processes), which is read from gunicorn's "Listening at" line. Entering the
``with`` block returns once every worker has loaded its indexes; leaving it stops
the server (SIGTERM, then SIGKILL after a grace period), also on error.
Imports nothing heavy: the server runs in its own process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_LOADED = re.compile(r"\[(\d+)\] \[INFO\] service\.resources: loaded ")  # one line per worker (Registry.load)


class ServerError(RuntimeError):
    """ff-serve exited or did not become ready; the message ends with its log."""


class LocalServer:
    """``ff-serve`` on ``127.0.0.1`` in a child process; a context manager."""

    def __init__(self, indexes: Mapping[str, str | Path], *, workers: int = 1, threads: int = 1,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None, ready_timeout: float = 180,
                 cwd: str | Path | None = None) -> None:
        fixed = {"--host", "--port", "--log-level", "--workers", "--threads", "--index"}
        if clash := sorted(fixed.intersection(a.split("=")[0] for a in args)):
            raise ValueError(f"LocalServer sets {', '.join(clash)} itself; pass them as arguments, not in args")
        self.indexes = {name: Path(path) for name, path in indexes.items()}
        self.workers, self.threads = workers, threads
        self.args, self.ready_timeout, self.cwd = list(args), ready_timeout, cwd
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server gets its own
        self.port: int | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._log_text = ""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self.port is None:
            raise ServerError("the server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The gunicorn master's process ID."""
        if self._proc is None:
            raise ServerError("the server is not running")
        return self._proc.pid

    @property
    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far (kept after it stopped)."""
        if self._log_path is not None and self._log_path.exists():
            self._log_text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return self._log_text

    def command(self) -> list[str]:
        """The ``ff-serve`` command line (as ``python -m service``)."""
        cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", "0",
               "--workers", str(self.workers), "--threads", str(self.threads), "--log-level", "info"]
        for name, path in self.indexes.items():
            cmd += ["--index", f"{name}={path}"]
        return cmd + self.args

    def start(self) -> LocalServer:
        """Start the server and wait until every worker has loaded its indexes and /readyz answers 200."""
        self._tmp = tempfile.TemporaryDirectory(prefix="ff-serve-")
        self._log_path = Path(self._tmp.name) / "server.log"
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(self.command(), cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerError(f"ff-serve exited with status {self._proc.returncode} before it was ready:\n"
                                  f"{self.log[-4000:]}")
            log = self.log
            if self.port is None and (match := _LISTENING.search(log)):
                self.port = int(match.group(1))
            if self.port is not None and len(set(_LOADED.findall(log))) >= self.workers:
                try:
                    with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                        if response.status == 200:
                            return
                except (OSError, urllib.error.HTTPError):
                    pass
            if time.monotonic() > deadline:
                raise ServerError(f"ff-serve was not ready within {self.ready_timeout:.0f} s:\n{log[-4000:]}")
            time.sleep(0.1)

    def stop(self, grace: float = 30) -> int | None:
        """Stop the server (SIGTERM; SIGKILL after ``grace`` seconds); its exit status. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
        if self._tmp is not None:
            self.log  # keep the text once the file is gone
            self._tmp.cleanup()
            self._tmp, self._log_path = None, None
        self.port = None
        return self.returncode

    def worker_pids(self) -> list[int]:
        """The process IDs of gunicorn's workers (the master's children)."""
        return child_pids(self.pid)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def child_pids(pid: int) -> list[int]:
    """The children of process ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        try:
            return sorted(child.pid for child in psutil.Process(pid).children())
        except psutil.NoSuchProcess:
            return []
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:  # the field after "(comm) state"
                children.append(int(entry.name))
    return sorted(children)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` in bytes (psutil when installed, else /proc), or None if it is gone."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.NoSuchProcess:
            return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
