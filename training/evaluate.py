"""``ff-train evaluate``: how good and how fast an encoder is, as Fast-Forward uses it.

For one model directory and an index built by ``ff-index build`` (its BM25 part is used):

* the corpus is encoded into a forward index under ``--work`` (reused on a second run with the
  same model files and corpus; the index's own vectors when the model is the one it was built with);
* alpha (and min-max vs raw scores) is tuned on ``--tune-split`` (a dev split the model did not
  train on, see ``ff-train dev-split``), then BM25, dense-only (exact) and Fast-Forward runs of
  ``--split`` are evaluated;
* per query group (query-length buckets) nDCG@10, and the worst group;
* query-encoding latency: each query of ``--split`` encoded on its own, one thread, median and p95;
* with ``--also DATA=INDEX``, the same model's dense-only and Fast-Forward nDCG@10 on other collections
  (their ``--split``), at ``--also-alpha`` (default 0.35, min-max: the settings a user who did not tune
  there gets; ``same``: the main collection's): how far the model travels.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranker.errors import InputError
from training.config import ALSO_ALPHA

MEASURES = ("nDCG@10", "R@100", "R@1000")


def forward_index_for(model_dir: Path, index_dir: Path, corpus: Path, work: Path, progress: bool = True) -> Path:
    """A forward-index directory holding ``corpus`` encoded by ``model_dir`` (built under ``work`` if needed)."""
    from indexing.corpus import count_documents, file_checksum, read_corpus
    from ranker.encoders import encoder_fingerprint
    from indexing.forward_build import EncodeSettings, build_forward_index
    from ranker.forward_index import VECTORS_DIR, read_forward_manifest

    fingerprint = encoder_fingerprint(model_dir)
    checksum = file_checksum(corpus)
    own = index_dir / VECTORS_DIR
    # one directory per (model, corpus): --also encodes other collections with the same model
    candidates = [own, work / f"vectors-{fingerprint.split(':')[1][:16]}-{checksum.split(':')[1][:8]}"]
    for path in candidates:
        if (path / "manifest.json").is_file():
            manifest = read_forward_manifest(path)
            if manifest["encoder"]["fingerprint"] == fingerprint and manifest.get("corpus_checksum") == checksum:
                return path
    out = candidates[-1]
    settings = EncodeSettings(encoder=str(model_dir), encoder_path=str(model_dir), fingerprint=fingerprint,
                              corpus_checksum=checksum)
    work.mkdir(parents=True, exist_ok=True)
    build_forward_index(read_corpus(corpus), out, work / f".{out.name}.shards", settings,
                        total=count_documents(corpus), progress=progress)
    return out


def encode_latency(model_dir: Path, queries: list[str], repeats: int = 1) -> dict[str, float]:
    """Median and p95 milliseconds to encode one query, one at a time on one CPU thread."""
    import torch

    from ranker.encoders import load_encoder

    model = load_encoder(model_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.encode(queries[:8], show_progress_bar=False)  # warm-up
        times = []
        for _ in range(repeats):
            for query in queries:
                start = time.perf_counter()
                model.encode([query], show_progress_bar=False)
                times.append(1000 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def evaluate_encoder(model: str | None, index: str | Path, data: str | Path, split: str = "test",
                     tune_split: str | None = "dev", alpha: float | None = None, work: str | Path = "work/eval",
                     grouping: str = "length", progress: bool = True, queries_only: bool = False,
                     normalization: str = "minmax", latency: bool = True) -> dict[str, Any]:
    """Everything :mod:`training.evaluate` measures, as a JSON-ready dict.

    ``queries_only``: the model encodes the queries only, the documents keep the index's vectors
    (a query encoder distilled from the index's encoder, see :mod:`ranker.query_encoder`).
    ``normalization`` goes with a given ``alpha``; ``latency=False`` skips timing the query encoder.
    """
    from indexing.corpus import corpus_file
    from ranker.encoders import resolve_encoder
    from ranker.evaluation import evaluate, per_query
    from ranker.fast_forward import FastForward
    from ranker.query_encoder import QueryEncoder
    from ranker.forward_index import ForwardIndex
    from ranker.fusion import interpolate
    from ranker.sparse import BM25Searcher
    from ranker.topics import load_qrels, read_queries
    from ranker.tuning import sweep_alpha
    from training.groups import group_of

    if (tune_split is None) == (alpha is None):
        raise InputError("give either --tune-split (alpha tuned there) or --alpha")
    model_dir, index, data = resolve_encoder(model), Path(index), Path(data)
    corpus = corpus_file(data)
    if not isinstance(corpus, Path):
        raise InputError(f"{data}: not a BEIR directory or corpus file")
    if queries_only:
        from ranker.forward_index import VECTORS_DIR
        from ranker.query_encoder import compatible

        vectors = index / VECTORS_DIR
        forward = ForwardIndex.open(vectors)
        if not compatible(model_dir, forward.manifest["encoder"]["fingerprint"]):
            raise InputError(f"{model_dir}: not distilled from the encoder of {index} "
                             f"({forward.manifest['encoder']['name']}); it cannot encode its queries")
    else:
        vectors = forward_index_for(model_dir, index, corpus, Path(work), progress=progress)
        forward = ForwardIndex.open(vectors)
    ff = FastForward(BM25Searcher(index), forward,
                     QueryEncoder(model_dir, normalize=forward.manifest["similarity"] == "cosine"))

    setting: dict[str, Any] = {"alpha": alpha, "normalization": normalization, "split": None}
    if tune_split is not None:
        queries = read_queries(data, split=tune_split)
        qrels = load_qrels(data, split=tune_split)
        tuned = ff.rank(queries, k_s=1000, alpha=1.0)
        best = (-1.0, 0.0, "minmax")
        for norm in ("minmax", "none"):
            table = sweep_alpha(tuned.sparse, tuned.dense, qrels, "nDCG@10", steps=20, normalization=norm)
            row = table.loc[table["value"].idxmax()]
            best = max(best, (float(row["value"]), float(row["alpha"]), norm))
        setting = {"alpha": round(best[1], 6), "normalization": best[2], "split": tune_split,
                   "nDCG@10": round(best[0], 4)}

    queries = read_queries(data, split=split)
    qrels = load_qrels(data, split=split)
    result = ff.rank(queries, k_s=1000, alpha=setting["alpha"], normalization=setting["normalization"])
    fused = interpolate(result.sparse, result.dense, setting["alpha"], normalization=setting["normalization"])
    runs = {"bm25": result.sparse, "dense": ff.dense_search(queries, k=1000, exact=True), "fast_forward": fused}
    scores = {name: {m: round(v, 4) for m, v in evaluate(run, qrels, list(MEASURES)).items()}
              for name, run in runs.items()}

    groups = {str(q): group_of(text, grouping) for q, text in zip(queries["qid"], queries["query"])}
    by_group: dict[str, dict[str, float]] = {}
    for name in ("dense", "fast_forward"):
        table = per_query(runs[name], qrels, ["nDCG@10"])
        table = table[table["qid"].isin(groups.keys())].assign(group=lambda t: t["qid"].map(groups))
        by_group[name] = {g: round(float(v), 4) for g, v in table.groupby("group")["value"].mean().items()}
    sizes = pd.Series(groups).value_counts().to_dict()
    return {
        "model": str(model_dir),
        "layers": _layers(model_dir),
        "documents_encoded_by": "the index encoder" if queries_only else "the model",
        "split": split,
        "queries": len(queries),
        "alpha": setting,
        "scores": scores,
        "groups": {"grouping": grouping, "queries": {g: int(n) for g, n in sizes.items()}, "nDCG@10": by_group,
                   "worst": {name: min(values, key=values.__getitem__) for name, values in by_group.items()}},
        "encode_latency": encode_latency(model_dir, queries["query"].astype(str).tolist()) if latency else None,
        "forward_index": str(vectors),
    }


def parse_data_index(pair: str, option: str = "--also") -> tuple[Path, Path]:
    """One ``DATA=INDEX`` value of ``option`` as ``(data, index)`` paths, both checked to exist."""
    data, sep, index = pair.partition("=")
    if not sep or not data or not index:
        raise InputError(f"{option} {pair}: expected DATA=INDEX (a BEIR directory and the index built from it)")
    for path, what in ((data, "collection"), (index, "index")):
        if not Path(path).is_dir():
            raise InputError(f"{option} {pair}: {what} {path}: no such directory")
    return Path(data), Path(index)


def parse_also(pairs: list[str]) -> list[tuple[Path, Path]]:
    """``DATA=INDEX`` pairs of ``--also`` as ``(data, index)`` paths, both checked to exist."""
    return [parse_data_index(pair, "--also") for pair in pairs]


def evaluate_also(model: str | None, report: dict[str, Any], collections: list[tuple[Path, Path]],
                  work: str | Path = "work/eval", progress: bool = True,
                  alpha: float | None = ALSO_ALPHA) -> list[dict[str, Any]]:
    """Dense-only and Fast-Forward scores of ``model`` on other ``(data, index)`` collections (``report``'s split),
    at ``alpha`` with min-max fusion, or with ``alpha=None`` at the alpha and normalisation of ``report`` (the
    main collection's evaluation; an alpha tuned there rarely suits another collection's BM25 scores)."""
    if alpha is None:
        alpha, normalization = report["alpha"]["alpha"], report["alpha"]["normalization"]
    else:
        normalization = "minmax"
    out = []
    for data, index in collections:
        other = evaluate_encoder(model, index, data, split=report["split"], tune_split=None,
                                 alpha=alpha, normalization=normalization, work=work, progress=progress,
                                 queries_only=report.get("documents_encoded_by") == "the index encoder", latency=False)
        out.append({"data": str(data), "index": str(index), "name": data.name, "queries": other["queries"],
                    "alpha": alpha, "normalization": normalization, "scores": other["scores"]})
    return out


def _layers(model_dir: Path) -> int | None:
    config = model_dir / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text(encoding="utf-8"))
    return values.get("num_hidden_layers") or values.get("n_layer")


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as a few aligned lines of text."""
    lines = [f"model {report['model']} ({report['layers']} layers; documents encoded by "
             f"{report.get('documents_encoded_by', 'the model')}); {report['split']}: {report['queries']} queries"]
    alpha = report["alpha"]
    tuned = f" (tuned on {alpha['split']}: nDCG@10 {alpha['nDCG@10']:.4f})" if alpha["split"] else ""
    lines.append(f"alpha {alpha['alpha']:.2f}, {alpha['normalization']} normalisation{tuned}")
    lines.append("run           " + "  ".join(f"{m:>8}" for m in MEASURES))
    for name, values in report["scores"].items():
        lines.append(f"{name:<14}" + "  ".join(f"{values[m]:8.4f}" for m in MEASURES))
    groups = report["groups"]
    for name, values in groups["nDCG@10"].items():
        cells = ", ".join(f"{g} ({groups['queries'].get(g, 0)}) {v:.4f}" for g, v in sorted(values.items()))
        lines.append(f"{name} nDCG@10 by query length: {cells}; worst: {groups['worst'][name]}")
    latency = report["encode_latency"]
    if latency:
        lines.append(f"query encoding (1 thread): median {latency['median_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms")
    for other in report.get("also", []):
        scores = other["scores"]
        setting = f"alpha {other['alpha']:.2f} {other['normalization']}" if "alpha" in other else "same alpha"
        lines.append(f"also {other['name']} ({report['split']}: {other['queries']} queries, {setting}): dense nDCG@10 "
                     f"{scores['dense']['nDCG@10']:.4f}, fast_forward nDCG@10 {scores['fast_forward']['nDCG@10']:.4f}")
    return "\n".join(lines)


def format_table(reports: list[dict[str, Any]], name: str) -> str:
    """One line per model: dense-only and Fast-Forward nDCG@10 on the main collection (``name``) and on each
    ``--also`` collection, side by side (markdown)."""
    names = [name] + [other["name"] for other in reports[0].get("also", [])]
    head = "| model | layers | " + " | ".join(f"{n} dense | {n} FF" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    for report in reports:
        cells = [report["scores"]] + [other["scores"] for other in report.get("also", [])]
        values = " | ".join(f"{c['dense']['nDCG@10']:.4f} | {c['fast_forward']['nDCG@10']:.4f}" for c in cells)
        lines.append(f"| {report['model']} | {report['layers']} | {values} |")
    return "\n".join(lines)
