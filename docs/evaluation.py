"""Regenerate docs/evaluation.md and docs/alpha-*.png: BM25 and Fast-Forward on the shared collections.

    make eval-docs            # or: python docs/evaluation.py --data ../shared/data --work work
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from indexing.build import build_index, library_versions
from ranker.evaluation import evaluate
from ranker.fast_forward import FastForward
from ranker.fusion import interpolate
from ranker.topics import load_qrels, read_queries
from ranker.tuning import plot_sweep, sweep_alpha
from ranker.machine import describe_machine

MEASURES = ["nDCG@10", "R@100", "R@1000", "RR@10", "AP"]
# Published reference (Anserini/Pyserini BEIR v1.0.0 flat regression), from ../shared/data/scifact/README.md.
REFERENCE = {"scifact": {"nDCG@10": 0.6789, "R@100": 0.9253, "R@1000": 0.9767}}
COLLECTIONS = {"scifact": "train", "cranfield": None}  # collection -> split to tune alpha on
DEFAULT_ALPHA = 0.35  # ff-rank's default (minmax), tuned on SciFact train


def run_collection(name: str, data: Path, work: Path, docs: Path, rebuild: bool) -> list[str]:
    """Build (unless already built), search, tune and evaluate one collection; return its table rows."""
    start = time.perf_counter()
    built = rebuild or not (work / "index" / "vectors" / "manifest.json").exists()
    if built:
        build_index(data, work / "index", force=True, threads=2, encoder="default", progress=True)
    build_cell = f"{time.perf_counter() - start:.0f} s" if built else "reused (`--rebuild` to time it)"
    ff = FastForward.open(work / "index")
    qrels = load_qrels(data, split="test")
    test = ff.rank(read_queries(data, split="test"), k_s=1000, alpha=1.0, threads=2)
    queries = len(test.sparse.qids)
    per_query = {stage: 1000 * seconds / queries for stage, seconds in test.timings.items()}

    tuned: dict[str, float] = {}
    tune_split = COLLECTIONS[name]
    if tune_split:
        train = ff.rank(read_queries(data, split=tune_split), k_s=1000, alpha=1.0, threads=2)
        train_qrels = load_qrels(data, split=tune_split)
        for normalization in ("none", "minmax"):
            table = sweep_alpha(train.sparse, train.dense, train_qrels, "nDCG@10", steps=40,
                                normalization=normalization)
            tuned[normalization] = float(table.loc[table["value"].idxmax(), "alpha"])
            plot_sweep(table, "nDCG@10", docs / f"alpha-{name}-{normalization}.png",
                       title=f"{name}: nDCG@10 on the {tune_split} split vs α ({normalization} normalisation)")
    else:  # no training split: show the curve on test, for illustration only (not used to pick alpha)
        table = sweep_alpha(test.sparse, test.dense, qrels, "nDCG@10", steps=40, normalization="minmax")
        plot_sweep(table, "nDCG@10", docs / f"alpha-{name}-minmax.png",
                   title=f"{name}: nDCG@10 on test vs α (minmax) — illustration, not used for tuning")

    dense = ff.dense_search(read_queries(data, split="test"), k=1000)
    systems = [("BM25 flat", test.sparse, ""),
               ("dense only, exact (FAISS IndexFlatIP over all documents)", dense, ""),
               ("dense re-rank of BM25 top 1000 (α = 0)", interpolate(test.sparse, test.dense, 0.0), "")]
    systems.append((f"Fast-Forward, minmax, α = {DEFAULT_ALPHA} (default)",
                    interpolate(test.sparse, test.dense, DEFAULT_ALPHA, normalization="minmax"), ""))
    for normalization, alpha in tuned.items():
        systems.append((f"Fast-Forward, {normalization}, α = {alpha:.3f} (tuned on {tune_split})",
                        interpolate(test.sparse, test.dense, alpha, normalization=normalization), ""))
    rows = []
    for label, run, _ in systems:
        metrics = evaluate(run, qrels, MEASURES)
        rows.append(f"| {name} | {label} | " + " | ".join(f"{metrics[m]:.4f}" for m in MEASURES) + " |")
    if name in REFERENCE:
        ref = " | ".join(f"{REFERENCE[name][m]:.4f}" if m in REFERENCE[name] else "–" for m in MEASURES)
        rows.append(f"| {name} | BM25 flat, Anserini regression (published) | {ref} |")
    timing = (f"| {name} | {build_cell} | " + " | ".join(f"{per_query[s]:.1f}" for s in
                                                             ("sparse", "encode", "dense", "fusion")) + " |")
    return rows + ["TIMING" + timing]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("evaluation.md"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild indexes that already exist")
    args = parser.parse_args()
    docs = args.out.parent

    results, timings = [], []
    for name in COLLECTIONS:
        for row in run_collection(name, args.data / name, args.work / f"eval-{name}", docs, args.rebuild):
            (timings if row.startswith("TIMING") else results).append(row.removeprefix("TIMING"))
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    lines = [
        "# Evaluation: BM25 and Fast-Forward re-ranking",
        "",
        f"Regenerated by `make eval-docs` (indexes under `work/` are reused; `--rebuild` rebuilds them) on {dt.date.today().isoformat()} ({describe_machine()}). Split `test`, "
        "BM25 k1 = 0.9, b = 0.4 over title + text (Porter stemming, Lucene English stopwords), k_s = 1000 "
        "candidates. Dense vectors: all-MiniLM-L6-v2 (384-d, cosine, max 256 tokens, one vector per document). "
        "Fast-Forward score = α · BM25 + (1 − α) · cosine, per query after the stated normalisation. "
        "Measures by ir_measures (trec_eval semantics; judged queries without results count as 0).",
        "",
        "| collection | system | " + " | ".join(MEASURES) + " |",
        "|---|---|" + "---|" * len(MEASURES),
        *results,
        "",
        "Plots of nDCG@10 against α: " + ", ".join(f"[{p.name}]({p.name})" for p in sorted(docs.glob("alpha-*.png")))
        + ". SciFact's α is tuned on its train split; Cranfield has no train split, so it uses the default "
          "α and its plot (on test) is only an illustration.",
        "",
        "## Time per query (ms, 2 threads, whole test split in one batch)",
        "",
        "| collection | index build (BM25 + encoding) | BM25 top 1000 | query encoding | vector look-up + scoring "
        "| fusion |",
        "|---|---|---|---|---|---|",
        *timings,
        "",
        f"Versions: {versions}.",
        "",
        "Cranfield has no published regression in this setup; its qrels are graded (gains 1–4); docs 471 and 995 "
        "are empty and are skipped by the BM25 index (they still get a vector).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
