"""Encode a corpus with Ray Data: whole shards as rows, one model per actor.

``ff-index build --runner ray [--ray-address ADDR] [--ray-actors N]``. The driver
reads the corpus and cuts it into the same shards as the local runner
(:mod:`indexing.forward_build`) on a feeder thread, while the actors encode:
each shard that is not done yet goes into Ray's object store as a one-row Arrow
table and through a bounded queue to the dataset's read tasks, so reading the
corpus overlaps encoding and Ray Data's back-pressure, not the corpus size,
bounds the text held in the object store. A pool of actors (one model each,
one GPU each when the vectors are computed on GPUs) encodes them with
:func:`~indexing.forward_build.prepare_shard` and
:func:`~indexing.forward_build.encode_shard`, exactly as the local runner does,
and the vectors stream back to the driver, which saves the shards. So the
index is byte for byte the local runner's, and no shared filesystem is needed:
workers only need this package and the model (the packaged default encoder, or
the same model directory; its fingerprint is checked).

Without ``--ray-address`` a local Ray instance is started with a bounded number
of CPUs, no dashboard and quiet logs, and shut down afterwards. Ray is imported
only in this module.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from indexing.forward_build import EncodeSettings, EncoderInfo, Shard
from ranker.errors import InputError

RAY_HINT = "install the 'ray' extra: pip install 'fast-forward-ranker[ray]'"
LOCAL_CPUS = 8  # a local Ray instance gets at most this many CPUs (or what --ray-actors needs)
READERS = 1  # read tasks that take shards from the driver's queue (they only wait and copy)
DEVICES = ("auto", "cpu", "cuda")


def import_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a one-line :class:`InputError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(f"--runner ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when nothing listens at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``).

    ``auto`` (the cluster this machine belongs to) is left to ``ray.init``.
    """
    if address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise InputError(f"--ray-address {address}: no Ray cluster reachable ({err.strerror or err})") from None


class RayRunner:
    """Encode shards on a pool of Ray Data actors (see the module docstring)."""

    def __init__(self, device: str = "auto", address: str | None = None, actors: int | None = None,
                 threads: int | None = None) -> None:
        """Check the options, that Ray is installed and that ``address`` answers; connect in :meth:`start`.

        ``threads``: torch CPU threads per actor (default: this process's torch default, the
        local runner's count, so that CPU vectors are identical to a local build).
        """
        if device not in DEVICES:
            raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
        if actors is not None and actors < 1:
            raise InputError(f"--ray-actors must be at least 1, got {actors}")
        self.ray = import_ray()
        if address is not None:
            check_address(address)
        self.requested_device, self.address, self.actors, self.threads = device, address, actors, threads
        self.device: str | None = None
        self.info: EncoderInfo | None = None
        self._started = False

    def start(self, settings: EncodeSettings | None = None) -> str:
        """Connect to (or start) Ray; the device the actors encode on: cuda when asked or when GPUs exist."""
        if self.threads is None:
            import torch

            self.threads = torch.get_num_threads()
        if not self.ray.is_initialized():
            self._init()
        _quiet_ray_data()
        resources = self.ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        if self.requested_device == "cuda" and gpus <= 0:
            raise InputError("--device cuda: the Ray cluster has no GPUs")
        self.device = "cuda" if gpus > 0 and self.requested_device != "cpu" else "cpu"
        if self.actors is None:
            self.actors = max(1, int(gpus)) if self.device == "cuda" else max(1, int(cpus // self.threads))
        return self.device

    def _init(self) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR, "configure_logging": True}
        if self.address is None:
            wanted = (self.actors or 1) * self.threads
            kwargs["num_cpus"] = max(min(os.cpu_count() or 1, LOCAL_CPUS), wanted if self.actors else 1)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # no C++ log lines on the terminal
        try:
            self.ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            where = f"--ray-address {self.address}" if self.address else "local Ray"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"{where}: cannot start or connect to Ray ({first})") from None
        self._started = True

    def encode(self, shards: Iterator[Shard], settings: EncodeSettings,
               batch_size: int) -> Iterator[tuple[Shard, np.ndarray]]:
        """Stream the shards to the actors as they are read; yield them encoded, as they finish."""
        ray = self.ray
        first = next(shards, None)
        if first is None:  # nothing left to encode: start no actors
            return
        gpu = self.device == "cuda"
        actors = self.actors or 1
        gpus = float(ray.cluster_resources().get("GPU", 0))
        feed = _ShardFeed(ray, itertools.chain([first], shards), readers=READERS, window=2 * actors + 2)
        # On a GPU two shards are in flight per actor: one is tokenised while the other is encoded.
        overlap = {"max_concurrent_calls_per_actor": 2, "enable_true_multi_threading": True} if gpu else {}
        dataset = ray.data.read_datasource(
            _queue_source(feed.queue, READERS), override_num_blocks=READERS, num_cpus=0,
        ).map_batches(
            ShardEncoder,
            fn_constructor_kwargs={"settings": settings, "batch_size": batch_size, "threads": self.threads},
            batch_size=1, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors, **overlap),
            num_cpus=1 if gpu else self.threads,
            num_gpus=(1.0 if actors <= gpus else gpus / actors) if gpu else 0,
        )
        received: set[int] = set()
        feed.start()
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    if self.info is None:
                        self.info = EncoderInfo(row["dim"], row["normalized"], row["max_seq_length"])
                    vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(row["rows"], row["dim"])
                    received.add(row["shard"])
                    yield Shard(row["shard"], row["docnos"], row["counts"], []), vectors
        except ray.exceptions.RayError as err:  # a worker's InputError (e.g. another model) stays one line
            message = _input_error_message(str(err))
            if message is None:
                raise
            raise InputError(message) from None
        finally:
            feed.stop()
        if feed.error is not None:  # reading the corpus failed (e.g. a malformed line): the shards before it are saved
            raise feed.error
        lost = sorted(feed.sent - received)
        if lost:  # a read task retried after a worker died: what it had taken from the queue is gone
            raise RuntimeError(f"Ray returned no vectors for {len(lost)} shard(s) (first: {lost[0]}); "
                               "run the build again to encode them (finished shards are kept)")

    def close(self) -> None:
        """Shut down the Ray instance if this runner started it."""
        if self._started:
            self.ray.shutdown()
            self._started = False


class _ShardFeed:
    """A thread that reads shards from the driver's iterator into a bounded Ray queue for the read tasks.

    Each shard's table is put into the object store by the driver (which owns it); the queue carries
    its reference. ``readers`` end-of-input markers follow the last shard, one per read task. An
    exception from the iterator (a malformed corpus line) is kept in ``error`` for the driver to raise.
    """

    def __init__(self, ray: Any, shards: Iterator[Shard], readers: int, window: int) -> None:
        from ray.util.queue import Queue

        self.ray, self.shards, self.readers = ray, shards, readers
        self.queue = Queue(maxsize=window, actor_options={"num_cpus": 0})
        self.sent: set[int] = set()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-shard-feed", daemon=True)

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (if still reading), wait for the thread and release the queue."""
        self._stopping.set()
        self._thread.join(timeout=60)
        self.queue.shutdown(force=True)

    def _run(self) -> None:
        try:
            for shard in self.shards:
                if not self._put([self.ray.put(_shard_table(shard))]):
                    return
                self.sent.add(shard.number)
        except BaseException as err:  # handed to the driver thread
            self.error = err
        for _ in range(self.readers):
            if not self._put(None):
                return

    def _put(self, item: Any) -> bool:
        """Put ``item`` when the queue has room; ``False`` if told to stop first."""
        from ray.util.queue import Full

        while not self._stopping.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return True
            except Full:
                continue
        return False


def _queue_source(queue: Any, readers: int) -> Any:
    """A Ray Data source of ``readers`` read tasks, each yielding shard tables from ``queue`` until an end marker."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    def read() -> Iterator[Any]:
        import ray

        while (item := queue.get()) is not None:
            yield ray.get(item[0])

    class QueueSource(Datasource):
        def estimate_inmemory_data_size(self) -> None:
            return None  # unknown: the corpus is still being read

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
            return [ReadTask(read, meta) for _ in range(readers)]

    return QueueSource()


class ShardEncoder:
    """A Ray Data actor: loads the model once, then encodes one shard per call."""

    def __init__(self, settings: EncodeSettings, batch_size: int, threads: int) -> None:
        """Load (and fingerprint-check) the build's encoder on this worker; use ``threads`` torch threads."""
        import torch

        from indexing.forward_build import encoder_info, load_model

        torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS for actors; the bytes depend on it
        self.model = load_model(settings, verify=True)
        self.info = encoder_info(self.model)
        self.batch_size, self.threads = batch_size, threads

    def __call__(self, table: Any) -> Any:
        """Rows ``shard, docnos, counts, texts`` in; ``shard, docnos, counts, rows, dim, vectors, ...`` out."""
        import pyarrow as pa

        from indexing.forward_build import encode_shard, prepare_shard

        out: dict[str, list] = {name: [] for name in _OUT_COLUMNS}
        for row in table.to_pylist():
            shard = Shard(row["shard"], row["docnos"], row["counts"], row["texts"])
            vectors = encode_shard(self.model, prepare_shard(self.model, shard, self.batch_size), self.threads)
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            for name, value in (("shard", shard.number), ("docnos", shard.docnos), ("counts", shard.counts),
                                ("rows", vectors.shape[0]), ("dim", self.info.dim), ("vectors", vectors.tobytes()),
                                ("normalized", self.info.normalized),
                                ("max_seq_length", self.info.max_seq_length)):
                out[name].append(value)
        return pa.table(out, schema=_out_schema())


def _input_error_message(text: str) -> str | None:
    """The message of an :class:`InputError` raised on a worker, found in a Ray error's text."""
    for line in reversed(text.splitlines()):
        if line.startswith("ranker.errors.InputError: "):
            return line.removeprefix("ranker.errors.InputError: ")
    return None


_OUT_COLUMNS = ("shard", "docnos", "counts", "rows", "dim", "vectors", "normalized", "max_seq_length")


def _out_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("shard", pa.int64()), ("docnos", pa.list_(pa.string())), ("counts", pa.list_(pa.int64())),
                      ("rows", pa.int64()), ("dim", pa.int64()), ("vectors", pa.large_binary()),
                      ("normalized", pa.bool_()), ("max_seq_length", pa.int64())])


def _shard_table(shard: Shard) -> Any:
    """A shard as a one-row Arrow table (one block of the dataset)."""
    import pyarrow as pa

    return pa.table({"shard": pa.array([shard.number], pa.int64()),
                     "docnos": pa.array([shard.docnos], pa.list_(pa.string())),
                     "counts": pa.array([shard.counts], pa.list_(pa.int64())),
                     "texts": pa.array([shard.texts], pa.list_(pa.large_string()))})


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or execution banners: the build has its own progress bar."""
    import warnings

    import ray.data

    with warnings.catch_warnings():  # Ray's own DataContext defaults set deprecated fields
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
