"""Regenerate docs/evaluation.md and docs/alpha-*.png: BM25 and Fast-Forward on the shared collections.

    make eval-docs            # or: python docs/evaluation.py --data ../shared/data --work work

Besides BM25, dense retrieval and Fast-Forward: BM25 + RM3 (pseudo-relevance feedback) and Fast-Forward over its
candidates, Fast-Forward over the dense run, and RRF and interpolation of the BM25 and dense runs; every system is
tested against BM25 (paired t-test, Holm-corrected) with wins, ties and losses per query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from indexing.build import build_index, library_versions
from ranker.eval_report import format_p
from ranker.evaluation import per_query
from ranker.fast_forward import FastForward
from ranker.fusion import fuse, interpolate
from ranker.machine import describe_machine
from ranker.prf import PrfSettings
from ranker.ranking import Ranking
from ranker.significance import compare
from ranker.topics import load_qrels, read_queries
from ranker.tuning import plot_sweep, sweep_alpha

MEASURES = ["nDCG@10", "R@100", "R@1000", "RR@10", "AP"]
TESTED = ["nDCG@10", "R@100", "R@1000"]  # tested against BM25; one Holm family per collection
LEVEL = 0.05
BASELINE = "BM25 flat"
RM3 = PrfSettings("rm3")  # Anserini's defaults: fbTerms 10, fbDocs 10, originalQueryWeight 0.5
# Published reference (Anserini/Pyserini BEIR v1.0.0 flat regression), from ../shared/data/scifact/README.md.
REFERENCE = {"scifact": {"nDCG@10": 0.6789, "R@100": 0.9253, "R@1000": 0.9767}}
COLLECTIONS = {"scifact": "train", "cranfield": None}  # collection -> split to tune alpha on
DEFAULT_ALPHA = 0.35  # ff-rank's default (minmax), tuned on SciFact train


def comparison_systems(ff: FastForward, queries, bm25: Ranking, dense: Ranking) -> list[tuple[str, Ranking]]:
    """BM25 + RM3 and Fast-Forward over it, Fast-Forward over the dense run, and the BM25 and dense runs fused."""
    rm3 = ff.rank(queries, k_s=1000, alpha=DEFAULT_ALPHA, threads=2, prf=RM3)
    rm3_label = (f"BM25 + RM3 (fbTerms {RM3.fb_terms}, fbDocs {RM3.fb_docs}, originalQueryWeight "
                 f"{RM3.original_query_weight:g})")
    interpolation_label = (f"interpolation of the BM25 and dense runs (minmax, α = {DEFAULT_ALPHA}, 0 where a run "
                           "lacks the document)")
    return [
        (rm3_label, rm3.sparse),
        (f"Fast-Forward over BM25 + RM3's top 1000, minmax, α = {DEFAULT_ALPHA}", rm3.fused),
        (f"Fast-Forward over the exact dense run's top 1000, minmax, α = {DEFAULT_ALPHA}",
         ff.rerank_run(dense, queries, alpha=DEFAULT_ALPHA).fused),
        ("RRF of the BM25 and dense runs (k = 60)", fuse([bm25, dense], "rrf", k=1000)),
        (interpolation_label, fuse([bm25, dense], "interpolate", weights=[DEFAULT_ALPHA, 1 - DEFAULT_ALPHA],
                                   normalization="minmax", k=1000)),
    ]


def evaluation_rows(name: str, systems: list[tuple[str, Ranking]], qrels) -> tuple[list[str], list[str]]:
    """The means table's rows (``*``: significantly different from BM25) and the significance table's rows."""
    tables = {label: per_query(run, qrels, MEASURES) for label, run in systems}
    tested = compare({label: t[t["measure"].isin(TESTED)] for label, t in tables.items()}, BASELINE,
                     test="t", correction="holm").set_index(["run", "measure"])
    means, tests = [], []
    for label, table in tables.items():
        mean = table.groupby("measure", sort=False)["value"].mean()
        cells = []
        for m in MEASURES:
            marked = label != BASELINE and m in TESTED and tested.loc[(label, m), "p_value"] < LEVEL
            cells.append(f"{mean[m]:.4f}" + ("\\*" if marked else ""))
        means.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
        if label != BASELINE:
            row = [tested.loc[(label, m)] for m in TESTED]
            tests.append(f"| {name} | {label} | " + " | ".join(
                f"{format_p(r.p_value)} | {int(r.wins)}/{int(r.ties)}/{int(r.losses)}" for r in row) + " |")
    return means, tests


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

    queries = read_queries(data, split="test")
    dense = ff.dense_search(queries, k=1000, exact=True)  # the row says exact: no ANN index, even if there is one
    systems = [(BASELINE, test.sparse),
               ("dense only, exact (FAISS IndexFlatIP over all documents)", dense),
               ("dense re-rank of BM25 top 1000 (α = 0)", interpolate(test.sparse, test.dense, 0.0))]
    systems.append((f"Fast-Forward, minmax, α = {DEFAULT_ALPHA} (default)",
                    interpolate(test.sparse, test.dense, DEFAULT_ALPHA, normalization="minmax")))
    for normalization, alpha in tuned.items():
        systems.append((f"Fast-Forward, {normalization}, α = {alpha:.3f} (tuned on {tune_split})",
                        interpolate(test.sparse, test.dense, alpha, normalization=normalization)))
    systems += comparison_systems(ff, queries, test.sparse, dense)
    rows, tests = evaluation_rows(name, systems, qrels)
    if name in REFERENCE:
        ref = " | ".join(f"{REFERENCE[name][m]:.4f}" if m in REFERENCE[name] else "–" for m in MEASURES)
        rows.append(f"| {name} | BM25 flat, Anserini regression (published) | {ref} |")
    timing = (f"| {name} | {build_cell} | " + " | ".join(f"{per_query[s]:.1f}" for s in
                                                             ("sparse", "encode", "dense", "fusion")) + " |")
    return rows + ["TIMING" + timing] + ["TEST" + row for row in tests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("evaluation.md"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild indexes that already exist")
    args = parser.parse_args()
    docs = args.out.parent

    results, timings, tests = [], [], []
    for name in COLLECTIONS:
        for row in run_collection(name, args.data / name, args.work / f"eval-{name}", docs, args.rebuild):
            if row.startswith("TIMING"):
                timings.append(row.removeprefix("TIMING"))
            elif row.startswith("TEST"):
                tests.append(row.removeprefix("TEST"))
            else:
                results.append(row)
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
        f"\\* {', '.join(TESTED)}: different from BM25 flat with a Holm-corrected p < {LEVEL} (paired t-test; "
        "table below).",
        "",
        "BM25 + RM3 is Anserini's RM3 with its defaults (`ff-rank run --prf rm3`; the same run as pyserini's "
        "`LuceneSearcher.set_rm3()`), 1,000 hits; Fast-Forward re-ranks those 1,000 instead of BM25's "
        "(`--mode ff --prf rm3`). Fast-Forward over the dense run (`FastForward.rerank_run`, `ff-rank rerank`) "
        "takes the run's scores as its sparse side; they are the cosines of the same vectors, so it ranks as the "
        "dense run does (up to float rounding). RRF and interpolation fuse the BM25 and exact dense runs (`ff-rank fuse`; "
        "`ranker.fusion.fuse`), which can return documents BM25 did not.",
        "",
        "## Against BM25: corrected p-values and wins/ties/losses",
        "",
        "Paired t-test over the judged test queries (a query without results counts 0), p-values Holm-corrected "
        f"over all systems and the {len(TESTED)} measures of a collection (ranker/significance.py, as "
        "`ff-rank eval --baseline`); W/T/L counts the queries where a system scores above/the same as/below BM25.",
        "",
        "| collection | system | " + " | ".join(f"{m} p | {m} W/T/L" for m in TESTED) + " |",
        "|---|---|" + "---|" * (2 * len(TESTED)),
        *tests,
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
