"""Encoding throughput: sentence-transformers' plain ``model.encode`` against the build runners.

    python benchmarks/encode_throughput.py --passages 2000 --ray          # CPU: a couple of minutes
    python benchmarks/encode_throughput.py --ray --out gpu.md             # GPU: 200k passages, fp16, < 5 min

For all-MiniLM-L6-v2 and a copy pruned to 4 layers in memory, on N synthetic ~60-word
passages (or passages of a BEIR ``--corpus``), this measures passages per second of

(a) plain ``model.encode(texts, batch_size)`` (fp16 weights on a GPU, like ours),
(b) the local runner of ``ff-index build``: shards of ``SHARD_DOCS`` texts, on a GPU tokenised
    ahead in worker threads, sorted by token count, fp16 forward passes, and
(c) with ``--ray``, the Ray runner on the same shards (a local Ray instance; actor start and
    model loading count, Ray's own start does not),

and prints a markdown table with the ratios to (a); ``--out FILE`` also writes it. The last
columns check the results: the largest difference between (b) and (a), and whether (b) and
(c) are the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from indexing.encoding import default_batch_size, resolve_device  # noqa: E402
from indexing.forward_build import SHARD_DOCS, EncodeSettings, LocalRunner, Shard  # noqa: E402
from ranker.encoders import load_encoder, resolve_encoder  # noqa: E402

VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their has been would when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over "
    "man me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year off come since "
    "against go came right used take three states himself few house use during without again place american around "
    "however home small found thought went say part once general high upon school every united left number course "
    "war until always away something fact though water less public put think almost hand enough far took head yet "
    "government system better set told nothing night end why called didn't eyes find going look asked later knew "
    "point next program city business give group toward young days let room president side social given present "
    "several order national possible rather second face per among form important often things looked early white "
    "case john become large big need four within felt children along saw best church ever least power development "
    "light seemed family interest want members mind country area others done turned although open problem god "
    "service certain kind began thing whole different help himself retrieval index dense sparse vector ranking"
).split()


def synthetic_passages(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` passages of ``words`` +- 25% common English words (realistic token counts for a BERT tokenizer)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(VOCABULARY)
    lengths = rng.integers(int(words * 0.75), int(words * 1.25) + 1, size=n)
    flat = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    return [" ".join(flat[bounds[i]:bounds[i + 1]]) for i in range(n)]


def corpus_passages(corpus: str, n: int, words: int) -> list[str]:
    """The first ``n`` passages of ``words`` words of a BEIR directory or corpus file."""
    from indexing.corpus import read_corpus
    from indexing.encoding import split_passages

    texts: list[str] = []
    for doc in read_corpus(corpus):
        texts += split_passages(doc.contents, words, words)
        if len(texts) >= n:
            break
    return texts[:n]


def model_variants(layers: list[int], device: str, workdir: Path) -> list[tuple[str, Any, Path]]:
    """(label, model on ``device`` (fp16 on a GPU), model directory for Ray) per layer count; fewer layers: pruned."""
    base = resolve_encoder(None)
    variants = []
    for count in layers:
        model = load_encoder(base, device="cpu")
        encoder = model[0].auto_model.encoder
        full = len(encoder.layer)
        if not 1 <= count <= full:
            raise SystemExit(f"--layers: {count} is not between 1 and {full}")
        path = base
        if count < full:
            encoder.layer = encoder.layer[:count]
            model[0].auto_model.config.num_hidden_layers = count
            path = workdir / f"minilm-{count}l"
            model.save(str(path))
        model.to(device)
        if device == "cuda":
            model.half()
        variants.append((f"MiniLM {count} layers" + (" (pruned)" if count < full else ""), model.eval(), path))
    return variants


def as_shards(texts: list[str]) -> list[Shard]:
    """The texts as one-passage documents in build shards."""
    return [Shard(n, [str(i) for i in range(first, first + len(chunk))], [1] * len(chunk), chunk)
            for n, first in enumerate(range(0, len(texts), SHARD_DOCS))
            for chunk in [texts[first:first + SHARD_DOCS]]]


def time_plain(model: Any, texts: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    """Seconds and vectors of plain ``model.encode``."""
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - start, np.asarray(vectors, dtype=np.float32)


def collect(results: Any, n: int) -> np.ndarray:
    """Shard results (in any order) as one array in text order."""
    out: np.ndarray | None = None
    for shard, vectors in results:
        if out is None:
            out = np.empty((n, vectors.shape[1]), dtype=np.float32)
        first = shard.number * SHARD_DOCS
        out[first:first + len(vectors)] = vectors
    assert out is not None
    return out


def time_local(model: Any, texts: list[str], batch_size: int, settings: EncodeSettings) -> tuple[float, np.ndarray]:
    """Seconds and vectors of the local runner (model already loaded)."""
    runner = LocalRunner(model=model)
    runner.start(settings)
    start = time.perf_counter()
    vectors = collect(runner.encode(iter(as_shards(texts)), settings, batch_size), len(texts))
    return time.perf_counter() - start, vectors


def time_ray(runner: Any, texts: list[str], batch_size: int, settings: EncodeSettings) -> tuple[float, np.ndarray]:
    """Seconds (actor start and model loading included) and vectors of the Ray runner."""
    start = time.perf_counter()
    vectors = collect(runner.encode(iter(as_shards(texts)), settings, batch_size), len(texts))
    return time.perf_counter() - start, vectors


def time_tokenize(model: Any, texts: list[str], batch_size: int) -> float:
    """Passages per second of ahead-of-time tokenisation alone (the GPU path's CPU work)."""
    from indexing.encoding import prepare_texts

    start = time.perf_counter()
    for shard in as_shards(texts):
        prepare_texts(model, shard.texts, batch_size, tokenize_ahead=True)
    return len(texts) / (time.perf_counter() - start)


def settings_for(label: str, path: Path, device: str) -> EncodeSettings:
    """Build settings for the benchmark's model directory (fingerprinted, as a build does)."""
    from ranker.encoders import encoder_fingerprint

    default = path == resolve_encoder(None)
    return EncodeSettings(encoder="default" if default else label, encoder_path=str(path),
                          fingerprint=encoder_fingerprint(path), corpus_checksum="benchmark", device=device)


def run(args: argparse.Namespace) -> str:
    """Measure every variant; the markdown report."""
    import torch

    device = resolve_device(args.device)
    n = args.passages or (200_000 if device == "cuda" else 2000)
    batch_size = args.batch_size or default_batch_size(device)
    texts = corpus_passages(args.corpus, n, args.words) if args.corpus else synthetic_passages(n, args.words)
    n = len(texts)
    print(f"{n:,} passages of ~{args.words} words on {device}, batch size {batch_size}", flush=True)
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="ff-bench-") as tmp:
        variants = model_variants([int(x) for x in args.layers.split(",")], device, Path(tmp))
        ray_runner = None
        if args.ray:
            from indexing.ray_runner import RayRunner

            start = time.perf_counter()
            ray_runner = RayRunner(device=device, actors=args.ray_actors)
            ray_runner.start()
            notes.append(f"Ray: local instance started in {time.perf_counter() - start:.1f} s (not counted), "
                         f"{ray_runner.actors} actor(s), {ray_runner.threads} torch thread(s) each")
        try:
            for label, model, path in variants:
                settings = settings_for(label, path, device)
                warm = texts[:min(n, 2 * batch_size)]
                time_plain(model, warm, batch_size)
                time_local(model, warm, batch_size, settings)
                plain_s = local_s = float("inf")
                for _ in range(args.repeat):  # alternate, keep the best: less noise from other load
                    seconds, plain = time_plain(model, texts, batch_size)
                    plain_s = min(plain_s, seconds)
                    print(f"{label}: plain encode {n / seconds:,.0f} passages/s", flush=True)
                    seconds, local = time_local(model, texts, batch_size, settings)
                    local_s = min(local_s, seconds)
                    print(f"{label}: local runner {n / seconds:,.0f} passages/s", flush=True)
                row = [label, f"{n:,}", f"{n / plain_s:,.0f}", f"{n / local_s:,.0f}", f"{plain_s / local_s:.2f}x"]
                same = "–"
                if ray_runner is not None:
                    ray_s, ray = time_ray(ray_runner, texts, batch_size, settings)
                    print(f"{label}: Ray runner {n / ray_s:,.0f} passages/s", flush=True)
                    row += [f"{n / ray_s:,.0f}", f"{plain_s / ray_s:.2f}x"]
                    same = "yes" if ray.tobytes() == local.tobytes() else "NO"
                else:
                    row += ["–", "–"]
                rows.append(row + [f"{np.abs(local - plain).max():.1e}", same])
                del plain, local
            tokenize_rate = time_tokenize(variants[0][1], texts, batch_size)
        finally:
            if ray_runner is not None:
                ray_runner.close()
    return report(args, device, batch_size, rows, notes + [
        f"ahead-of-time tokenisation alone (the GPU path's CPU side): {tokenize_rate:,.0f} passages/s"], torch)


def report(args: argparse.Namespace, device: str, batch_size: int, rows: list[list[str]], notes: list[str],
           torch: Any) -> str:
    """The markdown table with a description of the machine and the command."""
    if device == "cuda":
        hardware = f"{torch.cuda.get_device_name(0)}, float16 weights"
    else:
        hardware = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads, float32"
    header = ["model", "passages", "plain encode (p/s)", "local runner (p/s)", "local / plain", "Ray runner (p/s)",
              "Ray / plain", "max abs diff local vs plain", "local == Ray bytes"]
    lines = [
        f"Encoding throughput, {dt.date.today().isoformat()}: {hardware}; torch {torch.__version__}; "
        f"batch size {batch_size}; shards of {SHARD_DOCS} passages; best of {args.repeat} run(s).",
        "",
        f"    python benchmarks/encode_throughput.py {shlex.join(args.argv)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(f"- {note}" for note in notes),
    ]
    return "\n".join(lines) + "\n"


def make_parser() -> argparse.ArgumentParser:
    """The benchmark's arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--passages", type=int, help="passages to encode (default: 200000 on a GPU, 2000 on CPU)")
    parser.add_argument("--words", type=int, default=60, help="words per passage (default 60)")
    parser.add_argument("--corpus", help="take the passages from this BEIR directory or corpus file instead")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto")
    parser.add_argument("--batch-size", type=int, help="texts per batch, all methods (default: 64 CPU, 512 GPU)")
    parser.add_argument("--layers", default="6,4", help="encoder depths; below 6 = MiniLM pruned (default 6,4)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray runner (local Ray instance)")
    parser.add_argument("--ray-actors", type=int, help="Ray actors (default: one per GPU, else CPUs / threads)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of (a) and (b), best kept (default 1)")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and with --out, write) the table."""
    args = make_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.passages is not None and args.passages < 1:
        raise SystemExit("--passages must be at least 1")
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    table = run(args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
