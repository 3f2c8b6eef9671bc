"""``ff-rank``: retrieve (``run``), re-rank (``rerank``), fuse (``fuse``) and evaluate (``eval``) TREC runs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError, cli_entry

if TYPE_CHECKING:
    from ranker.fast_forward import FastForward


def make_parser() -> argparse.ArgumentParser:
    """The ``ff-rank`` argument parser."""
    parser = argparse.ArgumentParser(prog="ff-rank", description="Rank and evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="retrieve with BM25 and write a TREC run file")
    run.add_argument("--index", required=True, help="index directory built by ff-index build")
    run.add_argument("--queries", required=True, help="BEIR directory, queries JSONL or TSV (qid<TAB>text)")
    run.add_argument("--split", default="test", help="BEIR split whose judged queries to run (default: test)")
    run.add_argument("--k", type=int, default=1000, help="results per query (default: 1000)")
    _add_bm25_options(run)
    run.add_argument("--out", required=True, help="run file to write (.gz works)")
    run.add_argument("--tag", default="bm25", help="run tag, the last column (default: bm25)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_ff_options(run)
    run.add_argument("--profile", action="store_true", help="print the time spent in each stage")

    tune = sub.add_parser("tune", help="sweep alpha on a split, print the table and plot it")
    tune.add_argument("--index", required=True, help="index directory with a forward index")
    tune.add_argument("--queries", required=True, help="BEIR directory (queries and qrels)")
    tune.add_argument("--qrels", help="qrels file or BEIR directory (default: the --queries directory)")
    tune.add_argument("--split", default="train", help="split to tune on (default: train)")
    _add_bm25_options(tune)
    tune.add_argument("-m", "--measure", default="nDCG@10", help="measure to maximise (default: nDCG@10)")
    tune.add_argument("--steps", type=int, default=20, help="alpha grid: 0, 1/steps, ..., 1 (default: 20)")
    tune.add_argument("--plot", help="write the measure-vs-alpha plot to this PNG")
    tune.add_argument("--csv", help="write the whole grid (normalisation, alpha, value) to this CSV")
    tune.add_argument("--dense-k", type=int, default=0,
                      help="tune hybrid mode: add each query's top N dense candidates, stored for --mode hybrid "
                           "--alpha auto (default: 0, Fast-Forward over BM25's candidates)")
    tune.add_argument("--exact", action="store_true",
                      help="--dense-k: scan every vector even where the index has an ANN index")
    _add_ann_effort_options(tune)
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_ff_options(tune, with_alpha=False)

    rerank = sub.add_parser("rerank", help="re-rank any first-stage run with the forward index (Fast-Forward)")
    rerank.add_argument("--run", required=True, help="first-stage TREC run; its scores are the sparse side")
    rerank.add_argument("--index", required=True, help="index directory with a forward index")
    rerank.add_argument("--queries", required=True, help="BEIR directory, queries JSONL or TSV (qid<TAB>text)")
    rerank.add_argument("--split", default="test",
                        help="BEIR split whose judged queries to re-rank; the run's other queries are left out "
                             "(default: test)")
    rerank.add_argument("--depth", type=int, help="re-rank each query's top N candidates of the run (default: all)")
    rerank.add_argument("--out", required=True, help="run file to write (.gz works)")
    rerank.add_argument("--tag", default="ff", help="run tag, the last column (default: ff)")
    rerank.add_argument("--profile", action="store_true", help="print the time spent in each stage")
    _add_ff_options(rerank, with_mode=False)
    rerank.set_defaults(mode="ff", dense_k=0)

    fuse = sub.add_parser("fuse", help="fuse TREC runs into one: rrf, interpolate, combsum or combmnz")
    fuse.add_argument("runs", nargs="+", help="TREC run files (two or more)")
    fuse.add_argument("--method", choices=["rrf", "interpolate", "combsum", "combmnz"], default="rrf",
                      help="rrf: sum of w/(rrf_k + rank); interpolate: weighted mean of the scores (weights scaled "
                           "to sum 1); combsum: weighted sum; combmnz: combsum times the number of runs holding the "
                           "document; a run without a document adds 0 (default: rrf)")
    fuse.add_argument("--weights", type=float, nargs="+", help="one weight per run, in order (default: equal)")
    fuse.add_argument("--normalization", choices=["none", "minmax", "zscore"],
                      help="per-run, per-query score normalisation for interpolate/combsum/combmnz "
                           "(default: minmax; rrf uses ranks only)")
    fuse.add_argument("--k", type=int, default=1000, help="results per query in the output (default: 1000)")
    fuse.add_argument("--depth", type=int, help="fuse each run's top N per query (default: all)")
    fuse.add_argument("--rrf-k", type=int, default=60, help="rrf's constant (default: 60)")
    fuse.add_argument("--out", required=True, help="run file to write (.gz works)")
    fuse.add_argument("--tag", help="run tag, the last column (default: the method)")

    ev = sub.add_parser("eval", help="evaluate run files with ir_measures (trec_eval semantics)")
    ev.add_argument("runs", nargs="+", help="TREC run file(s)")
    ev.add_argument("--qrels", required=True, help="BEIR directory or qrels file (TREC or BEIR TSV)")
    ev.add_argument("--split", default="test", help="BEIR split (default: test)")
    ev.add_argument("-m", "--measure", action="append", dest="measures",
                    help="measure, repeatable (default: nDCG@10 R@100 R@1000)")
    ev.add_argument("--per-query", action="store_true", help="also print one line per query")
    ev.add_argument("--format", choices=["table", "markdown", "csv", "json"],
                    help="output format (default: table)")
    ev.add_argument("--json", action="store_true", help="print JSON (--format json)")
    sig = ev.add_argument_group("significance against a baseline")
    sig.add_argument("--baseline", help="run to test every other run against, measure by measure (added to the runs "
                                        "if not among them)")
    sig.add_argument("--test", choices=["t", "wilcoxon"], default="t",
                     help="paired t-test or Wilcoxon signed-rank test over the judged queries (default: t)")
    sig.add_argument("--correction", choices=["holm", "bonferroni", "none"], default="holm",
                     help="multiple-comparison correction over all (run, measure) pairs (default: holm)")
    sig.add_argument("--significance-level", type=float, default=0.05,
                     help="mark differences with a corrected p-value below this (default: 0.05)")
    return parser


def _add_bm25_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default: 0.9)")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 b (default: 0.4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="search threads")
    prf = parser.add_argument_group("pseudo-relevance feedback (BM25 first stage; Anserini's RM3 and Rocchio)")
    prf.add_argument("--prf", choices=["none", "rm3", "rocchio"], default="none",
                     help="expand each query with terms from its top BM25 hits, then search again (default: none)")
    prf.add_argument("--fb-terms", type=int, help="expansion terms (fbTerms; default: 10)")
    prf.add_argument("--fb-docs", type=int,
                     help="feedback documents (fbDocs; default: 10; rm3: at most 50, the hits RM3 reads)")
    prf.add_argument("--original-query-weight", type=float,
                     help="weight of the query's own terms, 0 to 1 (rm3: originalQueryWeight, default 0.5, the "
                          "feedback terms get the rest; rocchio: alpha, default 1)")
    prf.add_argument("--feedback-weight", type=float,
                     help="rocchio only: weight of the feedback documents' mean vector, 0 to 1 (beta; default 0.75)")


def _add_ann_effort_options(parser: Any) -> None:
    parser.add_argument("--nprobe", type=int, metavar="N",
                        help="dense search through an IVF ANN index: visit N lists per query instead of the index's "
                             "own nprobe (more: higher recall, slower; docs/million.md)")
    parser.add_argument("--ef-search", type=int, metavar="N",
                        help="dense search through an HNSW ANN index: explore at least N candidates per query "
                             "instead of the index's own efSearch")


def _add_ff_options(parser: argparse.ArgumentParser, with_alpha: bool = True, with_mode: bool = True) -> None:
    group = parser.add_argument_group("Fast-Forward re-ranking")
    if with_alpha and with_mode:
        group.add_argument("--mode", choices=["bm25", "ff", "dense", "hybrid"], default="bm25",
                           help="bm25: sparse only; ff: interpolate BM25 with the forward index; dense: dense-only "
                                "retrieval with FAISS (the index's ANN index if it has one, else exact); hybrid: "
                                "ff over BM25's candidates plus the top --dense-k dense ones (default: bm25)")
        group.add_argument("--dense-k", type=int, default=100,
                           help="dense candidates added per query in hybrid mode (default: 100)")
        group.add_argument("--exact", action="store_true",
                           help="dense and hybrid modes: scan every vector even where the index has an ANN index "
                                "(ff-index ann build)")
        _add_ann_effort_options(group)
    if with_alpha:
        group.add_argument("--early-stop", type=int, metavar="K",
                           help="return only the top K per query, exactly, skipping vector look-ups that cannot "
                                "change it (needs --normalization none)")
        group.add_argument("--early-stop-rule", choices=["exact", "paper"], default="exact",
                           help="exact: bound dense scores by |q|*max|d| (same top K); paper: by the best dense "
                                "score seen so far (fewer look-ups, not guaranteed) (default: exact)")
        group.add_argument("--alpha", default="0.35",
                           help="weight of the sparse score in [0, 1], or 'auto' for the value ff-rank tune "
                                "stored with the index (default: 0.35, tuned on SciFact train with minmax)")
    group.add_argument("--fusion", choices=["interpolate", "rrf"], default="interpolate",
                       help="interpolate scores, or weighted reciprocal-rank fusion (default: interpolate)")
    group.add_argument("--normalization", choices=["none", "minmax", "zscore"], default="minmax",
                       help="per-query score normalisation before interpolation (default: minmax)")
    group.add_argument("--ff-mode", choices=["maxp", "firstp", "avep", "passage"], default="maxp",
                       help="document score from passage scores (default: maxp)")
    group.add_argument("--missing", choices=["min", "drop"], default="min",
                       help="candidates without a vector get the query's lowest dense score, or are dropped")
    group.add_argument("--encoder", help="query encoder (default: the one recorded in the index)")
    group.add_argument("--allow-encoder-mismatch", action="store_true",
                       help="use --encoder even if it differs from the index's encoder")


@cli_entry("ff-rank")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ff-rank``."""
    args = make_parser().parse_args(argv)
    try:
        return {"run": _run, "rerank": _rerank, "fuse": _fuse, "eval": _eval, "tune": _tune}[args.command](args)
    except ValueError as err:  # option values that the library rejects (alpha, k1, b ...)
        if isinstance(err, InputError):
            raise
        raise InputError(str(err)) from None


def _check_no_ann_effort(args: argparse.Namespace, applies_to: str) -> None:
    for flag, value in (("--nprobe", args.nprobe), ("--ef-search", args.ef_search)):
        if value is not None:
            raise InputError(f"{flag} sets the dense search: it applies to {applies_to} only")


def _open_fast_forward(args: argparse.Namespace) -> FastForward:
    from ranker.fast_forward import FastForward

    bm25 = {name: getattr(args, name) for name in ("k1", "b") if hasattr(args, name)}  # rerank has no BM25
    effort = {name: getattr(args, name, None) for name in ("nprobe", "ef_search")}
    if any(value is not None for value in effort.values()) and getattr(args, "exact", False):
        raise InputError("--nprobe and --ef-search set the ANN index's search; --exact scans every vector instead: "
                         "pass one or the other")
    # A batch job: candidates' vectors are read (pread), not mapped, so a run over a large index does not
    # take the vectors file into its resident memory (ranker.pages.RowReader).
    ff = FastForward.open(args.index, encoder=args.encoder, allow_encoder_mismatch=args.allow_encoder_mismatch,
                          access="pread", **bm25)
    ff.set_ann_effort(**effort)
    return ff


PRF_OPTIONS = ("fb_terms", "fb_docs", "original_query_weight", "feedback_weight")


def _prf(args: argparse.Namespace) -> Any:
    """``--prf`` and its parameters as :class:`ranker.prf.PrfSettings`, or ``None`` without feedback."""
    from ranker.prf import PrfSettings, check_prf

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    given = {name: getattr(args, name) for name in PRF_OPTIONS if getattr(args, name) is not None}
    if args.prf == "none":
        if given:
            raise InputError(f"{flag(next(iter(given)))} needs --prf rm3 or --prf rocchio")
        return None
    if getattr(args, "mode", "bm25") == "dense":
        raise InputError("--prf expands BM25 queries; --mode dense has no BM25 (use bm25, ff or hybrid)")
    try:
        check_prf(args.prf, name=flag, **given)
    except ValueError as err:
        raise InputError(str(err)) from None
    return PrfSettings(args.prf, **given)


def _run(args: argparse.Namespace) -> int:
    from ranker.sparse import BM25Searcher
    from ranker.topics import read_queries
    from ranker.trec import RunWriter

    if args.k < 1:
        raise InputError(f"--k must be at least 1, got {args.k}")
    prf = _prf(args)
    _resolve_alpha(args)
    queries = read_queries(args.queries, split=args.split)
    if args.mode not in ("dense", "hybrid"):
        _check_no_ann_effort(args, "--mode dense and hybrid")
    if args.mode in ("ff", "hybrid"):
        _check_early_stop(args)
        if args.mode == "hybrid" and args.dense_k < 1:
            raise InputError(f"--dense-k must be at least 1, got {args.dense_k}")
    # Blocks of queries are ranked and written one after the other: memory does not grow with the queries.
    with RunWriter(args.out, args.tag) as out:
        if args.mode == "bm25":
            searcher = BM25Searcher(args.index, k1=args.k1, b=args.b)
            for block in _blocks(queries, not args.quiet, "BM25 search"):
                out.write(searcher.search(block, k=args.k, threads=args.threads, prf=prf).df)
        elif args.mode == "dense":
            ff = _open_fast_forward(args)
            for block in _blocks(queries, not args.quiet, "dense search"):
                out.write(ff.dense_search(block, k=args.k, exact=args.exact).df)
        else:
            timings: dict[str, float] = {}
            looked_up = candidates = 0
            for result in _open_fast_forward(args).rank_blocks(
                    queries, k_s=args.k, alpha=args.alpha, mode=args.ff_mode, fusion=args.fusion,
                    normalization=args.normalization, missing=args.missing, threads=args.threads,
                    progress=not args.quiet, dense_k=args.dense_k if args.mode == "hybrid" else 0,
                    early_stop=args.early_stop, exact_early_stop=args.early_stop_rule == "exact",
                    exact_dense=args.exact, prf=prf):
                out.write(result.fused.df)
                for stage, seconds in result.timings.items():
                    timings[stage] = timings.get(stage, 0.0) + seconds
                looked_up, candidates = looked_up + result.looked_up, candidates + len(result.sparse)
            _report_ff(args, timings, looked_up, candidates, len(queries))
    print(f"wrote {args.out} ({out.rows:,} rows, {out.queries:,} of {len(queries):,} queries with results)")
    return 0


def _blocks(queries: Any, progress: bool, desc: str) -> Iterator[Any]:
    """``queries`` in blocks of ``QUERY_BLOCK`` rows, with a progress bar over the queries."""
    from tqdm import tqdm

    from ranker.fast_forward import QUERY_BLOCK

    with tqdm(total=len(queries), unit="query", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for lo in range(0, len(queries), QUERY_BLOCK):
            yield queries.iloc[lo:lo + QUERY_BLOCK]
            bar.update(min(QUERY_BLOCK, len(queries) - lo))


def _check_early_stop(args: argparse.Namespace) -> None:
    """Validate ``--early-stop``; it drops candidates without a vector (a fill value depends on every candidate)."""
    if args.early_stop is None:
        return
    if args.early_stop < 1:
        raise InputError(f"--early-stop must be at least 1, got {args.early_stop}")
    if args.normalization != "none":
        raise InputError("--early-stop needs --normalization none (a normalised score depends on "
                         "every candidate)")
    args.missing = "drop"


def _report_ff(args: argparse.Namespace, timings: dict[str, float], looked_up: int, candidates: int,
               queries: int) -> None:
    """Print the early-stopping look-ups and (``--profile``) the time per stage."""
    queries = max(queries, 1)
    if args.early_stop is not None:
        print(f"early stopping at {args.early_stop}: {looked_up / queries:.1f} vector look-ups "
              f"per query instead of {candidates / queries:.1f}")
    if args.profile:
        total = sum(timings.values()) or 1.0
        for stage, seconds in timings.items():
            print(f"{stage:<8} {seconds:8.3f} s  {1000 * seconds / queries:8.2f} ms/query  "
                  f"{100 * seconds / total:5.1f} %")


def _rerank(args: argparse.Namespace) -> int:
    from ranker.ranking import Ranking
    from ranker.topics import read_queries
    from ranker.trec import RunWriter, first_lines

    if args.depth is not None and args.depth < 1:
        raise InputError(f"--depth must be at least 1, got {args.depth}")
    _resolve_alpha(args)
    _check_early_stop(args)
    run = Ranking.read(args.run)
    queries = read_queries(args.queries, split=args.split)
    known = set(queries["qid"])
    unknown = set(run.qids) - known
    outside: set[str] = set()
    if unknown and os.path.isdir(args.queries):  # a BEIR directory: queries of other splits are left out
        outside = unknown & set(read_queries(args.queries)["qid"])
        unknown -= outside
    if unknown:
        lines = first_lines(args.run, unknown)
        first = min(unknown, key=lambda q: lines[q])
        more = f" (and {len(unknown) - 1} more such queries)" if len(unknown) > 1 else ""
        raise InputError(f"{args.run}:{lines[first]}: query {first!r} is not in {args.queries}{more}")
    if outside:
        run = run.for_queries(known)
    timings: dict[str, float] = {}
    with_candidates = looked_up = candidates = without_vector = 0
    with RunWriter(args.out, args.tag) as out:  # block by block: memory holds the input run and one block
        for result in _open_fast_forward(args).rerank_run_blocks(
                run, queries, depth=args.depth, alpha=args.alpha, mode=args.ff_mode, fusion=args.fusion,
                normalization=args.normalization, missing=args.missing, early_stop=args.early_stop,
                exact_early_stop=args.early_stop_rule == "exact"):
            out.write(result.fused.df)
            for stage, seconds in result.timings.items():
                timings[stage] = timings.get(stage, 0.0) + seconds
            with_candidates += len(result.sparse.qids)
            looked_up, candidates = looked_up + result.looked_up, candidates + len(result.sparse)
            without_vector += result.without_vector
    print(f"{with_candidates:,} queries re-ranked; {len(queries) - with_candidates:,} without candidates in "
          f"{args.run} (no results for them)")
    if outside:
        print(f"{len(outside):,} queries of {args.run} are not in split {args.split!r}: left out")
    if args.early_stop is not None:
        what = f"{looked_up:,} candidates looked up of {candidates:,}"
    else:
        what = f"{candidates:,} candidates"
    policy = ("ranked by their first-stage rank alone" if args.fusion == "rrf" else
              "dropped" if args.missing == "drop" else "given their query's lowest dense score")
    print(f"{what}; {without_vector:,} without a vector ({policy})")
    _report_ff(args, timings, looked_up, candidates, with_candidates)
    print(f"wrote {args.out} ({out.rows:,} rows, {out.queries:,} of {len(queries):,} queries with results)")
    return 0


def _fuse(args: argparse.Namespace) -> int:
    from ranker.fusion import fuse
    from ranker.ranking import Ranking

    if len(args.runs) < 2:
        raise InputError(f"fuse needs at least two runs, got {len(args.runs)}")
    if args.weights is not None and len(args.weights) != len(args.runs):
        raise InputError(f"--weights: {len(args.runs)} runs but {len(args.weights)} weights")
    for option, value, low in (("--k", args.k, 1), ("--depth", args.depth, 1), ("--rrf-k", args.rrf_k, 0)):
        if value is not None and value < low:
            raise InputError(f"{option} must be at least {low}, got {value}")
    if args.method == "rrf" and args.normalization is not None:
        raise InputError("--normalization does not apply to rrf, which fuses ranks")
    runs = [Ranking.read(path) for path in args.runs]
    fused = fuse(runs, args.method, weights=args.weights, normalization=args.normalization or "minmax",
                 rrf_k=args.rrf_k, depth=args.depth, k=args.k)
    fused.write(args.out, tag=args.tag or args.method)
    print(f"wrote {args.out} ({len(fused):,} rows, {len(fused.qids):,} queries; {args.method} of {len(runs)} runs)")
    return 0


def _resolve_alpha(args: argparse.Namespace) -> None:
    """Turn ``--alpha`` into a float; ``auto`` reads the setting ff-rank tune stored with the index."""
    if args.alpha == "auto":
        from ranker.tuning import read_tuned

        tuned = read_tuned(args.index, mode="hybrid" if args.mode == "hybrid" else "ff")
        args.alpha, args.normalization, args.fusion = tuned["alpha"], tuned["normalization"], tuned["fusion"]
        if args.mode == "hybrid":
            args.dense_k = int(tuned.get("dense_k") or args.dense_k)
        extra = f", {args.dense_k} dense candidates" if args.mode == "hybrid" else ""
        feedback = f" with {tuned['prf']['method']} feedback" if tuned.get("prf") else ""
        print(f"alpha {args.alpha} with {args.normalization} normalisation{extra} (tuned on {tuned['split']}"
              f"{feedback})")
        return
    try:
        args.alpha = float(args.alpha)
    except ValueError:
        raise InputError(f"--alpha must be a number in [0, 1] or 'auto', got {args.alpha!r}") from None
    if not 0 <= args.alpha <= 1:
        raise InputError(f"--alpha must lie in [0, 1], got {args.alpha}")


def _tune(args: argparse.Namespace) -> int:
    from ranker.topics import load_qrels, read_queries
    from ranker.tuning import plot_sweep, sweep_alpha_blocks, write_tuned

    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    if args.dense_k < 0:
        raise InputError(f"--dense-k must be at least 0, got {args.dense_k}")
    if not args.dense_k:
        _check_no_ann_effort(args, "tuning with --dense-k")
    prf = _prf(args)
    queries = read_queries(args.queries, split=args.split)
    qrels = load_qrels(args.qrels or args.queries, split=args.split)
    blocks = _open_fast_forward(args).rank_blocks(queries, k_s=1000, alpha=1.0, mode=args.ff_mode,
                                                  threads=args.threads, progress=not args.quiet,
                                                  dense_k=args.dense_k, exact_dense=args.exact, prf=prf)
    normalizations = ["none", "minmax", "zscore"] if args.fusion == "interpolate" else ["none"]
    grid = sweep_alpha_blocks(((r.sparse, r.dense) for r in blocks), qrels, args.measure, steps=args.steps,
                              fusion=args.fusion, normalizations=normalizations, missing=args.missing)
    for row in grid.itertuples():
        print(f"{row.normalization}\talpha={row.alpha:.3f}\t{args.measure}\t{row.value:.4f}")
    best = grid.loc[grid["value"].idxmax()]
    setting = {"alpha": round(float(best["alpha"]), 6), "normalization": best["normalization"],
               "fusion": args.fusion, "measure": args.measure, "value": float(best["value"]),
               "split": args.split, "queries": str(args.queries), "missing": args.missing, "dense_k": args.dense_k,
               "prf": prf.describe() if prf is not None else None}
    write_tuned(args.index, setting, mode="hybrid" if args.dense_k else "ff")
    mode = "--mode hybrid " if args.dense_k else ""
    print(f"best on {args.split}: alpha {setting['alpha']:.3f}, {setting['normalization']} normalisation "
          f"({args.measure} {setting['value']:.4f}); stored for {mode}--alpha auto")
    if args.csv:
        grid.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        best_table = grid[grid["normalization"] == setting["normalization"]]
        plot_sweep(best_table, args.measure, args.plot,
                   title=f"{args.index} ({args.split} split, {setting['normalization']} normalisation)")
        print(f"wrote {args.plot}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ranker.evaluation import DEFAULT_MEASURES, evaluate, per_query
    from ranker.ranking import Ranking
    from ranker.topics import load_qrels

    fmt = _eval_format(args)
    measures = args.measures or list(DEFAULT_MEASURES)
    if args.baseline is not None:
        return _eval_baseline(args, fmt, measures)
    qrels = load_qrels(args.qrels, split=args.split)
    results, details = {}, {}
    for path in args.runs:
        run = Ranking.read(path)
        results[path] = evaluate(run, qrels, measures)
        if args.per_query:
            details[path] = per_query(run, qrels, measures)
    if fmt == "json":
        out = {path: {"measures": results[path], "queries": int(qrels["qid"].nunique())} for path in args.runs}
        for path, table in details.items():
            out[path]["per_query"] = table.to_dict(orient="records")
        print(json.dumps(out if len(args.runs) > 1 else out[args.runs[0]], indent=2))
        return 0
    if fmt in ("csv", "markdown"):
        from ranker.eval_report import means_text

        sys.stdout.write(means_text(results, fmt))
        return 0
    from ranker.eval_report import run_names

    names = run_names(args.runs)
    first = results[args.runs[0]]
    if args.per_query:
        for path in args.runs:
            for row in details[path].itertuples():
                print(f"{row.measure}\t{row.qid}\t{row.value:.4f}")
    if len(args.runs) == 1:
        for measure, value in first.items():
            print(f"{measure}\tall\t{value:.4f}")
        return 0
    width = max(len(m) for m in first) + 2
    print("measure".ljust(width) + "  ".join(n.rjust(max(len(n), 7)) for n in names))
    for measure in first:
        cells = (f"{results[p][measure]:.4f}".rjust(max(len(n), 7)) for p, n in zip(args.runs, names))
        print(measure.ljust(width) + "  ".join(cells))
    return 0


def _eval_format(args: argparse.Namespace) -> str:
    """``--format``, with ``--json`` as its old spelling; checks the combinations with ``--per-query``."""
    if args.json and args.format not in (None, "json"):
        raise InputError(f"--json contradicts --format {args.format}")
    fmt = "json" if args.json else args.format or "table"
    if args.per_query and fmt in ("markdown", "csv"):
        raise InputError(f"--per-query works with --format table or json, not {fmt}")
    if args.per_query and fmt == "json" and args.baseline is not None:
        raise InputError("--per-query with --baseline prints per-query values in --format table only")
    return fmt


def _eval_baseline(args: argparse.Namespace, fmt: str, measures: list[str]) -> int:
    from ranker.eval_report import comparison_json, comparison_text
    from ranker.evaluation import per_query
    from ranker.ranking import Ranking
    from ranker.significance import compare
    from ranker.topics import load_qrels

    if not 0 < args.significance_level < 1:
        raise InputError(f"--significance-level must lie in (0, 1), got {args.significance_level}")
    same = [p for p in args.runs if os.path.abspath(p) == os.path.abspath(args.baseline)]
    baseline = same[0] if same else args.baseline
    paths = list(dict.fromkeys(args.runs if same else [baseline, *args.runs]))
    if len(paths) < 2:
        raise InputError(f"--baseline {args.baseline}: no other run to compare with it")
    qrels = load_qrels(args.qrels, split=args.split)
    judged = set(qrels["qid"])
    runs = {path: Ranking.read(path) for path in paths}
    for path in paths:
        if path != baseline:
            _check_same_queries(path, set(runs[path].qids) & judged, baseline, set(runs[baseline].qids) & judged)
    tables = {path: per_query(run, qrels, measures) for path, run in runs.items()}
    table = compare(tables, baseline, test=args.test, correction=args.correction)
    if fmt == "json":
        sys.stdout.write(comparison_json(table, baseline))
        return 0
    if args.per_query:
        for path in paths:
            for row in tables[path].itertuples():
                print(f"{row.measure}\t{row.qid}\t{row.value:.4f}")
    sys.stdout.write(comparison_text(table, baseline, fmt, args.significance_level, args.test, args.correction,
                                     len(judged)))
    return 0


def _check_same_queries(path: str, queries: set[str], baseline: str, baseline_queries: set[str]) -> None:
    """A paired test needs both runs to answer the same judged queries; name the ones that differ, with lines."""
    from ranker.trec import first_lines

    if queries == baseline_queries:
        return
    parts = []
    for where, only in ((path, sorted(queries - baseline_queries)), (baseline, sorted(baseline_queries - queries))):
        if only:
            lines = first_lines(where, only[:5])
            shown = ", ".join(f"{q!r} (line {lines[q]})" for q in only[:5]) + (", ..." if len(only) > 5 else "")
            parts.append(f"{len(only)} only in {where}: {shown}")
    raise InputError(f"{path}: its judged queries differ from the baseline {baseline}'s: {'; '.join(parts)}")


if __name__ == "__main__":
    sys.exit(main())
