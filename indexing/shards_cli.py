"""``ff-index shards create|add|merge|verify``: the command-line wiring of :mod:`indexing.shards`."""

from __future__ import annotations

import argparse
from typing import Any

from indexing.shards import add_shards, create_sharded, forward_dir, merge_shards, verify_sharded


def register(subparsers: Any) -> None:
    """Add ``ff-index shards`` and its subcommands to the ``ff-index`` parser's subparsers."""
    shards = subparsers.add_parser("shards", help="sharded forward indexes: create, add, merge, verify",
                                   description="A sharded forward index lists several forward indexes (shards, "
                                               "built anywhere with the same encoder) and opens as one.")
    sub = shards.add_subparsers(dest="shards_command", required=True)
    shard_help = "forward index, index directory with vectors/, or sharded index"

    create = sub.add_parser("create", help="make a sharded forward index from forward indexes",
                            description="Copy the shards into --out/shards/ and write the sharded manifest. "
                                        "--out may be an index directory: its vectors/ is written.")
    create.add_argument("--out", required=True, help="sharded forward index (or index directory) to create")
    create.add_argument("shards", nargs="+", metavar="SHARD", help=shard_help)
    create.add_argument("--force", action="store_true", help="replace an existing forward index at --out")
    _placement(create)

    add = sub.add_parser("add", help="add documents: add shards to a sharded forward index",
                         description="Add shards (their document IDs must be new). A plain forward index at "
                                     "--index becomes a sharded one first.")
    add.add_argument("--index", required=True, help="sharded forward index or index directory")
    add.add_argument("shards", nargs="+", metavar="SHARD", help=shard_help)
    _placement(add)

    merge = sub.add_parser("merge", help="write one plain forward index with every document",
                           description="Merge the shards (in order) into one plain forward index at --out.")
    merge.add_argument("--index", required=True, help="sharded forward index or index directory")
    merge.add_argument("--out", required=True, help="forward index (or index directory) to create")
    merge.add_argument("--force", action="store_true", help="replace an existing forward index at --out")
    merge.add_argument("--verify", action="store_true", help="check every shard's checksums first")

    check = sub.add_parser("verify", help="check every shard's files against their checksums")
    check.add_argument("--index", required=True, help="sharded forward index or index directory")


def _placement(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--link", action="store_true", help="hard-link the shard files instead of copying them")
    how.add_argument("--move", action="store_true", help="like --link, then remove the given shards")


def run(args: argparse.Namespace) -> int:
    """Run ``ff-index shards ...``; returns the exit status."""
    command = args.shards_command
    if command == "create":
        manifest = create_sharded(args.out, args.shards, force=args.force, link=args.link, move=args.move)
        print(f"wrote {forward_dir(args.out)} ({_counts(manifest)})")
    elif command == "add":
        manifest = add_shards(args.index, args.shards, link=args.link, move=args.move)
        print(f"updated {forward_dir(args.index)} ({_counts(manifest)})")
    elif command == "merge":
        manifest = merge_shards(args.index, args.out, force=args.force, verify=args.verify)
        print(f"wrote {forward_dir(args.out)} ({manifest['documents']:,} documents, {manifest['vectors']:,} vectors)")
    else:
        index = verify_sharded(args.index)
        shards = getattr(index, "shards", [index])
        print(f"{index.path}: ok ({len(shards)} shard{'s' * (len(shards) != 1)}, {index.num_docs:,} documents, "
              f"{index.num_vectors:,} vectors)")
    return 0


def _counts(manifest: dict[str, Any]) -> str:
    return (f"{len(manifest['shards'])} shards, {manifest['documents']:,} documents, "
            f"{manifest['vectors']:,} vectors")
