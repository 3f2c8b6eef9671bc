"""``ff-index``: build indexes. ``ff-index build --corpus DIR_OR_FILE --index DIR``."""

from __future__ import annotations

import argparse
import os
import sys

from ranker.errors import cli_entry


def make_parser() -> argparse.ArgumentParser:
    """The ``ff-index`` argument parser."""
    parser = argparse.ArgumentParser(prog="ff-index", description="Build Fast-Forward indexes.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a BM25 (Lucene) index from a corpus",
                           description="Build an index directory from a BEIR directory, a JSONL file "
                                       "(_id/title/text or id/contents) or a TSV file (docno<TAB>text).")
    build.add_argument("--corpus", required=True, help="BEIR directory or corpus file (.gz works)")
    build.add_argument("--index", required=True, help="index directory to create")
    build.add_argument("--force", action="store_true", help="replace an existing index")
    build.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="indexing threads")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_entry("ff-index")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ff-index``."""
    args = make_parser().parse_args(argv)
    if args.command == "build":
        from indexing.build import build_index

        manifest = build_index(args.corpus, args.index, force=args.force, threads=args.threads,
                               progress=not args.quiet)
        print(f"wrote {args.index} ({manifest['corpus']['documents']:,} documents)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
