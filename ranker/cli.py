"""``ff-rank``: retrieve (``run``) and evaluate (``eval``) TREC runs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ranker.errors import InputError, cli_entry


def make_parser() -> argparse.ArgumentParser:
    """The ``ff-rank`` argument parser."""
    parser = argparse.ArgumentParser(prog="ff-rank", description="Rank and evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="retrieve with BM25 and write a TREC run file")
    run.add_argument("--index", required=True, help="index directory built by ff-index build")
    run.add_argument("--queries", required=True, help="BEIR directory, queries JSONL or TSV (qid<TAB>text)")
    run.add_argument("--split", default="test", help="BEIR split whose judged queries to run (default: test)")
    run.add_argument("--k", type=int, default=1000, help="results per query (default: 1000)")
    run.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default: 0.9)")
    run.add_argument("--b", type=float, default=0.4, help="BM25 b (default: 0.4)")
    run.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="search threads")
    run.add_argument("--out", required=True, help="run file to write (.gz works)")
    run.add_argument("--tag", default="bm25", help="run tag, the last column (default: bm25)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser("eval", help="evaluate run files with ir_measures (trec_eval semantics)")
    ev.add_argument("runs", nargs="+", help="TREC run file(s)")
    ev.add_argument("--qrels", required=True, help="BEIR directory or qrels file (TREC or BEIR TSV)")
    ev.add_argument("--split", default="test", help="BEIR split (default: test)")
    ev.add_argument("-m", "--measure", action="append", dest="measures",
                    help="measure, repeatable (default: nDCG@10 R@100 R@1000)")
    ev.add_argument("--per-query", action="store_true", help="also print one line per query")
    ev.add_argument("--json", action="store_true", help="print JSON")
    return parser


@cli_entry("ff-rank")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ff-rank``."""
    args = make_parser().parse_args(argv)
    return {"run": _run, "eval": _eval}[args.command](args)


def _run(args: argparse.Namespace) -> int:
    from ranker.sparse import BM25Searcher
    from ranker.topics import read_queries

    if args.k < 1:
        raise InputError(f"--k must be at least 1, got {args.k}")
    queries = read_queries(args.queries, split=args.split)
    try:
        searcher = BM25Searcher(args.index, k1=args.k1, b=args.b)
    except ValueError as err:
        raise InputError(str(err)) from None
    ranking = searcher.search(queries, k=args.k, threads=args.threads, progress=not args.quiet)
    ranking.write(args.out, tag=args.tag)
    print(f"wrote {args.out} ({len(ranking):,} rows, {len(ranking.qids):,} of {len(queries):,} queries with results)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ranker.evaluation import DEFAULT_MEASURES, evaluate, per_query
    from ranker.ranking import Ranking
    from ranker.topics import load_qrels

    measures = args.measures or list(DEFAULT_MEASURES)
    qrels = load_qrels(args.qrels, split=args.split)
    results, details = {}, {}
    for path in args.runs:
        run = Ranking.read(path)
        results[path] = evaluate(run, qrels, measures)
        if args.per_query:
            details[path] = per_query(run, qrels, measures)
    if args.json:
        out = {path: {"measures": results[path], "queries": int(qrels["qid"].nunique())} for path in args.runs}
        for path, table in details.items():
            out[path]["per_query"] = table.to_dict(orient="records")
        print(json.dumps(out if len(args.runs) > 1 else out[args.runs[0]], indent=2))
        return 0
    for path in args.runs:
        if args.per_query:
            for row in details[path].itertuples():
                print(f"{row.measure}\t{row.qid}\t{row.value:.4f}")
        for measure, value in results[path].items():
            prefix = f"{path}\t" if len(args.runs) > 1 else ""
            print(f"{prefix}{measure}\tall\t{value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
