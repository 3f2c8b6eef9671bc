"""``ff-serve``: the search API under gunicorn (never Flask's development server).

    ff-serve --index scifact=work/scifact --workers 2 --threads 4
    ff-serve --config serve.toml            # settings from a TOML file (see --help, service/config.py)

Each worker process creates the app after the fork (``preload_app=False``),
starts its own JVM and loads the indexes, in its main thread, before it
accepts its first connection: requests queue in the shared listening socket
until some worker is ready, so none sees a half-loaded worker. ``--help``
imports neither Flask nor torch nor the JVM.

New index versions are served without restarting a worker: ``SIGHUP`` to the
master (``kill -HUP PID``) or ``POST /v1/admin/reload`` publishes a reload in
the server's state directory, and every worker opens the new versions beside
the old ones and swaps them in (:mod:`service.resources`, :mod:`service.reload`).
gunicorn's own ``SIGHUP`` (new workers, the old ones stopped at once) would
leave no worker to answer while the new ones load, and an index that fails to
load would stop the whole server; ff-serve replaces it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ranker.errors import InputError, cli_entry
from service.config import check_index, fill_config, parse_index_spec

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_TIMEOUT = 60  # seconds
TIMEOUT_MARGIN = 30   # seconds above the time budget, for the default --timeout

EPILOG = """\
configuration: each setting (the keys of service.config.DEFAULTS) is taken from the first of
  1. a command-line flag (--index, --candidates, --dense-k, --time-budget-ms, --torch-threads,
     --admin-token-file, --read-token-file, --cors-origin)
  2. an environment variable FF_NAME, e.g. FF_ALPHA=0.5, FF_INDEXES=scifact=work/scifact
  3. the TOML file of --config FILE, else of FF_CONFIG=FILE, e.g.
         INDEXES = {scifact = "work/scifact"}
         DEFAULT_MODE = "hybrid"
         ALPHA = 0.35
         TIME_BUDGET_MS = 2000
  4. the defaults
--index replaces the INDEXES of the environment and the file. An unknown key in
the file is an error; the server checks everything before it starts.

access: /v1/admin/* needs 'Authorization: Bearer <ADMIN_TOKEN>' (off without one);
  with READ_TOKEN set, search, rerank, docs and indexes need it (or the admin token).
  Keep tokens in files (--admin-token-file, chmod 600): a flag's value would show in
  process listings. There is no TLS: bind to loopback (the default) behind a proxy.
reload: kill -HUP <master PID>, or POST /v1/admin/reload, serves new index versions
  with no restart; requests in flight finish on the old version.
"""


def make_parser() -> argparse.ArgumentParser:
    """The ``ff-serve`` argument parser."""
    parser = argparse.ArgumentParser(prog="ff-serve", description="Serve Fast-Forward indexes over HTTP (gunicorn).",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", action="append", metavar="NAME=PATH",
                        help="an index to serve, repeatable; the first is the default (default: INDEXES of the "
                             "environment or the configuration file)")
    parser.add_argument("--config", metavar="FILE", help="a TOML configuration file (default: $FF_CONFIG, if set)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, each with its own JVM (default: 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker; above 1 uses gunicorn's gthread workers (default: 1)")
    parser.add_argument("--candidates", type=int,
                        help="BM25 candidates re-ranked in ff and hybrid modes (CANDIDATES; default: 1000)")
    parser.add_argument("--dense-k", type=int,
                        help="dense candidates added per query in hybrid mode (DENSE_K; default: 100)")
    parser.add_argument("--time-budget-ms", type=int, metavar="MS",
                        help="a search still running after MS milliseconds is answered 503; 0: no budget "
                             "(TIME_BUDGET_MS; default: 2000)")
    parser.add_argument("--torch-threads", type=int,
                        help="threads per worker for query encoding (TORCH_THREADS; default: CPUs / workers)")
    parser.add_argument("--query-runtime", choices=["onnx", "torch"],
                        help="encode queries with the model exported to ONNX Runtime (2-3x faster for one query; "
                             "PyTorch if the export fails) or with PyTorch (QUERY_RUNTIME; default: onnx)")
    parser.add_argument("--timeout", type=int,
                        help="seconds before a silent worker is restarted: with --threads 1, the backstop for a "
                             "request stuck in one stage; must exceed the time budget (default: "
                             f"{DEFAULT_TIMEOUT}, or the budget + {TIMEOUT_MARGIN} if that is more)")
    parser.add_argument("--admin-token-file", metavar="FILE",
                        help="file holding the bearer token of /v1/admin/* (ADMIN_TOKEN_FILE; default: the admin "
                             "endpoints are off)")
    parser.add_argument("--read-token-file", metavar="FILE",
                        help="file holding the bearer token that search, rerank, docs and indexes then require "
                             "(READ_TOKEN_FILE; default: they are open)")
    parser.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                        help="an origin whose pages may call the API from a browser, repeatable; * for any "
                             "(CORS_ORIGINS; default: none, no CORS headers)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="(default: info)")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request to stderr (gunicorn's format: no header but Referer and User-Agent, "
                             "so never a token)")
    return parser


@cli_entry("ff-serve")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ff-serve``."""
    args = make_parser().parse_args(argv)
    config, timeout = _check_args(args)
    host = f"[{args.host}]" if ":" in args.host else args.host
    options = {
        "bind": f"{host}:{args.port}", "workers": args.workers, "threads": args.threads,
        "worker_class": "gthread" if args.threads > 1 else "sync", "preload_app": False,
        "timeout": timeout, "graceful_timeout": 10, "loglevel": args.log_level, "errorlog": "-",
        "accesslog": "-" if args.access_log else None, "proc_name": "ff-serve", "control_socket_disable": True,
        "limit_request_line": 8190,  # the most gunicorn allows: a 1,000-character q fits
    }
    return serve(config, options)


def _check_args(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Check every option, the configuration file and the environment before anything starts; each mistake
    is one line and exit status 2. Returns the workers' ``create_app`` config (the flags and the file; each
    worker reads the same file and environment) and gunicorn's worker timeout."""
    for name, value, low in (("--workers", args.workers, 1), ("--threads", args.threads, 1),
                             ("--candidates", args.candidates, 1), ("--dense-k", args.dense_k, 1),
                             ("--time-budget-ms", args.time_budget_ms, 0), ("--timeout", args.timeout, 1),
                             ("--torch-threads", args.torch_threads, 1)):
        if value is not None and value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must lie in 0..65535, got {args.port}")
    config: dict[str, Any] = {"CONFIG_FILE": os.path.abspath(args.config) if args.config else None}
    if args.index:
        indexes: dict[str, str] = {}
        for spec in args.index:
            name, path = parse_index_spec(spec)
            if name in indexes:
                raise InputError(f"--index {name}: the name is given twice")
            indexes[name] = str(path)
        config["INDEXES"] = indexes
    for key, value in (("CANDIDATES", args.candidates), ("DENSE_K", args.dense_k),
                       ("TIME_BUDGET_MS", args.time_budget_ms), ("TORCH_THREADS", args.torch_threads),
                       ("QUERY_RUNTIME", args.query_runtime), ("CORS_ORIGINS", args.cors_origin)):
        if value is not None:
            config[key] = value
    for key, file in (("ADMIN_TOKEN_FILE", args.admin_token_file), ("READ_TOKEN_FILE", args.read_token_file)):
        if file is not None:
            config[key] = os.path.abspath(file)
    from flask import Config  # the layers exactly as each worker's create_app will stack them

    effective = Config(os.getcwd())
    sources = fill_config(effective, {**config, "CONFIG_FILE": args.config})
    if not effective["INDEXES"]:
        raise InputError("no index configured; pass --index NAME=PATH, or set INDEXES in the --config file "
                         "or FF_INDEXES=NAME=PATH")
    if effective["DEFAULT_INDEX"] is not None and effective["DEFAULT_INDEX"] not in effective["INDEXES"]:
        raise InputError(f"DEFAULT_INDEX {effective['DEFAULT_INDEX']!r} is not one of the configured indexes")
    timeout = _timeout(args.timeout, effective["TIME_BUDGET_MS"])
    for name, path in effective["INDEXES"].items():
        where = f"--index {name}" if args.index else f"index {name} (from {sources['INDEXES']})"
        try:
            if "vectors" in check_index(path):
                _check_vectors(path)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
    config["EAGER_LOAD"] = False  # each worker loads before it accepts a connection (Server.load)
    if effective["TORCH_THREADS"] is None:
        config["TORCH_THREADS"] = max(1, (os.cpu_count() or 1) // args.workers)
    return config, timeout


def _timeout(timeout: int | None, budget_ms: float) -> int:
    """gunicorn's worker timeout (seconds): above the time budget, as the backstop for a stage that hangs."""
    if timeout is None:
        return max(DEFAULT_TIMEOUT, math.ceil(budget_ms / 1000) + TIMEOUT_MARGIN)
    if budget_ms and timeout * 1000 <= budget_ms:
        raise InputError(f"--timeout ({timeout} s) must exceed the time budget (TIME_BUDGET_MS = {budget_ms:g} ms): "
                         "it restarts a worker stuck past its budget")
    return timeout


def _check_vectors(path: Path) -> None:
    """What ``FastForward.open`` would refuse, checked here in the master, which must not start a JVM:
    forward-index files that do not match their manifest, an encoder that is not the one that built them."""
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from ranker.forward_index import ForwardIndex

    recorded = ForwardIndex.open(path).manifest["encoder"]
    if encoder_fingerprint(resolve_encoder(recorded["name"])) != recorded["fingerprint"]:
        raise InputError(f"{path}: the encoder {recorded['name']!r} installed here differs from the one that "
                         "built the vectors; query and document vectors would not match")


def serve(config: dict[str, Any], options: dict[str, Any]) -> int:
    """Run the app under gunicorn until it is stopped (SIGINT/SIGTERM); SIGHUP reloads the indexes (see
    :func:`reloading_arbiter`). Returns the exit status."""
    import shutil
    import tempfile

    import gunicorn.util
    from gunicorn.app.base import BaseApplication

    from service.reload import StateDir

    gunicorn.util.write_error = _write_json_error  # gunicorn's own 400/414/431 answers: JSON, not HTML

    master = os.getpid()
    own_metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # metrics shared by the workers
        own_metrics_dir = tempfile.mkdtemp(prefix="ff-serve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    state = StateDir(tempfile.mkdtemp(prefix="ff-serve-state-")).create()  # reloads, shared by the workers
    config = {**config, "STATE_DIR": str(state.path)}

    def child_exit(server: Any, worker: Any) -> None:
        _child_exit(server, worker)
        state.forget_worker(worker.pid)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {**options, "child_exit": child_exit}.items():
                self.cfg.set(key, value)

        def run(self) -> None:
            try:
                reloading_arbiter(state)(self).run()
            except RuntimeError as err:  # as BaseApplication.run
                print(f"\nError: {err}\n", file=sys.stderr)
                sys.exit(1)

        def load(self) -> Any:  # runs in each worker, after the fork
            import logging

            logging.basicConfig(level=options["loglevel"].upper(), stream=sys.stderr,
                                format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
            from service.app import create_app

            app = create_app(config)
            registry = app.extensions["ff"]
            with _keep_signal_handlers():  # the JVM would take SIGTERM etc. from gunicorn's worker
                registry.load()  # before this worker accepts a connection: it is ready when it answers
            if registry.state == "failed":
                raise RuntimeError(f"ff-serve: the indexes failed to load: {registry.error}")
            from service.params import api_models

            api_models(app)  # the request models (pydantic), built before the first request
            return app

    try:
        Server(prog="ff-serve").run()
    finally:
        if os.getpid() == master:  # workers fork from inside run()
            if own_metrics_dir is not None:
                shutil.rmtree(own_metrics_dir, ignore_errors=True)
            shutil.rmtree(state.path, ignore_errors=True)
    return 0


def reloading_arbiter(state: Any) -> type:
    """gunicorn's arbiter, with SIGHUP publishing a reload of every index (``state``: the server's
    :class:`~service.reload.StateDir`) instead of replacing the workers."""
    from gunicorn.arbiter import Arbiter

    class ReloadingArbiter(Arbiter):  # type: ignore[misc]
        def handle_hup(self) -> None:
            published = state.publish(None)
            self.log.info("Hang up: reload %d of every index published; each worker opens the new versions "
                          "within RELOAD_POLL_SECONDS and then swaps them in", published.generation)
            self.log.reopen_files()

    return ReloadingArbiter


@contextlib.contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Reinstall this process's handlers for the signals the JVM claims when it starts.

    Without this, SIGTERM (gunicorn's graceful stop) would run the JVM's
    shutdown instead and kill the worker with status 143.
    """
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Replaces ``gunicorn.util.write_error`` so that errors gunicorn answers itself are JSON too."""
    import json

    from gunicorn.util import write_nonblock

    body = json.dumps({"error": {"code": status_int, "name": reason, "message": mesg}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    write_nonblock(sock, head.encode("latin-1") + body)


def _child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: drop a dead worker's live metrics files (prometheus-client multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
