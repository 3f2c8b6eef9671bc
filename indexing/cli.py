"""``ff-index``: build indexes. ``ff-index build --corpus DIR_OR_FILE --index DIR``; ``quantize``; ``coalesce``.

``ff-index synthesize`` writes a generated test collection (``indexing/synthetic.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ranker.errors import InputError, cli_entry


def make_parser() -> argparse.ArgumentParser:
    """The ``ff-index`` argument parser."""
    parser = argparse.ArgumentParser(prog="ff-index", description="Build Fast-Forward indexes.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the BM25 index and the forward index from a corpus",
                           description="Build an index directory from a BEIR directory, a JSONL file "
                                       "(_id/title/text or id/contents) or a TSV file (docno<TAB>text).")
    build.add_argument("--corpus", required=True, help="BEIR directory or corpus file (.gz works)")
    build.add_argument("--index", required=True, help="index directory to create")
    build.add_argument("--force", action="store_true", help="replace an existing index")
    build.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="indexing threads")
    build.add_argument("--encoder", default="all-MiniLM-L6-v2",
                       help="sentence-transformers model directory for the forward index "
                            "(default: the packaged all-MiniLM-L6-v2)")
    build.add_argument("--no-vectors", action="store_true", help="build the BM25 index only")
    build.add_argument("--passage-words", type=int, help="split documents into passages of this many words")
    build.add_argument("--stride", type=int, help="words between passage starts (default: --passage-words)")
    build.add_argument("--max-seq-length", type=int, help="encoder input limit in tokens (default: the model's)")
    build.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored vector type")
    build.add_argument("--batch-size", type=int, help="encoding batch size (default: 64 on CPU, 512 on CUDA)")
    build.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="where to encode: auto (cuda when a GPU is available), cpu, cuda (float16)")
    build.add_argument("--runner", choices=["local", "ray"], default="local",
                       help="encode in this process (local) or on Ray Data actors (ray; needs the 'ray' extra)")
    build.add_argument("--ray-address", metavar="ADDR",
                       help="Ray cluster to use, HOST:PORT, ray://HOST:PORT or auto (default: start a local Ray)")
    build.add_argument("--ray-actors", type=int, metavar="N",
                       help="Ray encoding actors, one model each (default: one per GPU, else CPUs / torch threads)")
    build.add_argument("--quantize", choices=["int8", "pq"],
                       help="store the vectors as int8 or PQ codes (as ff-index quantize does, at build time)")
    build.add_argument("--pq-m", type=int, help="--quantize pq: sub-quantisers (default 48)")
    build.add_argument("--opq", action="store_true", help="--quantize pq: learn an OPQ rotation first")
    build.add_argument("--quiet", action="store_true", help="no progress bar")

    add = sub.add_parser("add-vectors", help="add a forward index built from precomputed vectors",
                         description="Add <index>/vectors from an .npy array (rows, dim) and a file with one "
                                     "document ID per row (consecutive rows of one ID are its passages).")
    add.add_argument("--index", required=True, help="existing index directory")
    add.add_argument("--vectors", required=True, help=".npy file, shape (rows, dim)")
    add.add_argument("--ids", required=True, help="text file, one document ID per vector row")
    add.add_argument("--encoder", default="all-MiniLM-L6-v2",
                     help="the model that encodes queries for these vectors (recorded and checked at query time)")
    add.add_argument("--similarity", choices=["dot", "cosine"], default="dot",
                     help="cosine: the vectors are unit length and queries get normalised (default: dot)")
    add.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored vector type")
    add.add_argument("--force", action="store_true", help="replace an existing forward index")

    _add_ann_parser(sub)
    _add_update_parsers(sub)

    quant = sub.add_parser("quantize", help="write a copy of an index with float16, int8 or PQ vectors",
                           description="Copy an index (Lucene part and manifest) to --out with its forward index "
                                       "stored as float16, int8 scalar codes or product-quantisation codes.")
    quant.add_argument("--index", required=True, help="source index directory (not modified)")
    quant.add_argument("--out", required=True, help="index directory to create")
    quant.add_argument("--kind", required=True, choices=["float32", "float16", "int8", "pq"], help="storage kind")
    quant.add_argument("--m", type=int, help="pq: sub-quantisers, must divide the dimension (default 48)")
    quant.add_argument("--nbits", type=int, help="pq: bits per sub-quantiser, 1..8 (default 8)")
    quant.add_argument("--opq", action="store_true", help="pq: learn an OPQ rotation first")
    quant.add_argument("--train-sample", type=int, default=100_000,
                       help="pq: train on at most this many vectors (fixed-seed sample; default 100000)")
    quant.add_argument("--force", action="store_true", help="replace an existing --out index")

    coal = sub.add_parser("coalesce", help="merge consecutive similar passage vectors (sequential coalescing)",
                          description="Copy a passage-level index to --out, merging each document's consecutive "
                                      "passage vectors while their cosine distance to the running average of the "
                                      "group stays at most --delta.")
    coal.add_argument("--index", required=True, help="source index directory (not modified)")
    coal.add_argument("--out", required=True, help="index directory to create")
    coal.add_argument("--delta", type=float, required=True, help="cosine-distance threshold, e.g. 0.3")
    coal.add_argument("--force", action="store_true", help="replace an existing --out index")

    qenc = sub.add_parser("query-encoder", help="encode this index's queries with a smaller, distilled model",
                          description="Record a query encoder for the index: the model that built its vectors, "
                                      "or one distilled from it with ff-train distill (its queries land in the "
                                      "same vector space). ff-rank and ff-serve then encode queries with it.")
    qenc.add_argument("--index", required=True, help="index directory with a forward index")
    which = qenc.add_mutually_exclusive_group(required=True)
    which.add_argument("--encoder", help="model directory (distilled from the index's encoder)")
    which.add_argument("--reset", action="store_true", help="encode queries with the index's own encoder again")

    synth = sub.add_parser("synthesize", help="generate a large test collection from a real one's statistics",
                           description="Write a BEIR collection of --docs generated documents and --queries "
                                       "queries (each judged relevant to the document it was drawn from) with the "
                                       "word statistics of a real BEIR collection; --vectors adds document vectors "
                                       "with the structure of the default encoder's.")
    synth.add_argument("--from", dest="source", required=True, metavar="DIR",
                       help="real BEIR collection to imitate (corpus, queries, qrels)")
    synth.add_argument("--docs", type=int, required=True, help="documents to generate")
    synth.add_argument("--queries", type=int, required=True, help="queries to generate (at most --docs)")
    synth.add_argument("--out", required=True, help="BEIR directory to create")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the output is identical for a seed")
    synth.add_argument("--vectors", action="store_true",
                       help="also write vectors.npy and vector_ids.txt (for ff-index add-vectors)")
    synth.add_argument("--cache", metavar="FILE",
                       help="--vectors: reuse the fitted vector map in FILE, or write it there (.npz)")
    synth.add_argument("--vector-noise", type=float, metavar="X",
                       help="--vectors: residual-shaped noise, in units of the fit's held-out residual (default 0)")
    synth.add_argument("--force", action="store_true", help="replace an existing --out collection")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")

    from indexing.shards_cli import register

    register(sub)  # ff-index shards create|add|merge|verify
    return parser


@cli_entry("ff-index")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ff-index``."""
    args = make_parser().parse_args(argv)
    if args.command == "build":
        from indexing.build import build_index

        if args.batch_size is not None and args.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
        if args.runner != "ray" and (args.ray_address is not None or args.ray_actors is not None):
            raise InputError(f"{'--ray-address' if args.ray_address is not None else '--ray-actors'} "
                             "needs --runner ray")
        manifest = _build(args, build_index)
        vectors = manifest.get("vectors")
        extra = f", {vectors['vectors']:,} vectors of {vectors['dim']}" if vectors else ""
        kind = f" as {args.quantize}" if args.quantize else ""
        print(f"wrote {args.index} ({manifest['corpus']['documents']:,} documents{extra}{kind})")
    elif args.command == "add-vectors":
        from pathlib import Path

        from indexing.add_vectors import add_vectors

        manifest = add_vectors(Path(args.index), Path(args.vectors), Path(args.ids), args.encoder,
                               similarity=args.similarity, dtype=args.dtype, force=args.force)
        vectors = manifest["vectors"]
        print(f"wrote {args.index}/vectors ({vectors['documents']:,} documents, {vectors['vectors']:,} vectors "
              f"of {vectors['dim']})")
    elif args.command == "quantize":
        from indexing.derived_index import vectors_bytes
        from indexing.quantize import quantize_index

        manifest = quantize_index(args.index, args.out, args.kind, m=args.m, nbits=args.nbits, opq=args.opq,
                                  train_size=args.train_sample, force=args.force)
        before, after = vectors_bytes(args.index), vectors_bytes(args.out)
        print(f"wrote {args.out} ({manifest['vectors']['vectors']:,} vectors as {args.kind}; vectors/ "
              f"{before:,} -> {after:,} bytes, {before / max(after, 1):.1f}x smaller)")
    elif args.command == "coalesce":
        from indexing.coalesce import coalesce_index

        manifest = coalesce_index(args.index, args.out, args.delta, force=args.force)
        done = manifest["vectors"]["coalesced"]
        print(f"wrote {args.out} ({done['vectors_before']:,} -> {done['vectors_after']:,} vectors at delta "
              f"{done['delta']:g}, {100 * done['reduction']:.1f}% fewer)")
    elif args.command == "query-encoder":
        from ranker.query_encoder import write_query_encoder

        record = write_query_encoder(args.index, None if args.reset else args.encoder)
        print(f"{args.index}: queries are encoded with {record['path'] if record else 'the index encoder'}")
    elif args.command == "ann":
        _ann(args)
    elif args.command in ("add", "delete", "compact"):
        return _update(args)
    elif args.command == "synthesize":
        from indexing.synthetic import synthesize

        record = synthesize(args.source, args.out, args.docs, args.queries, seed=args.seed, vectors=args.vectors,
                            cache=args.cache, vector_noise=args.vector_noise, force=args.force,
                            progress=not args.quiet)
        made = record["generated"]
        extra = f", vectors of {record['vectors']['dim']}" if "vectors" in record else ""
        print(f"wrote {args.out} ({record['documents']:,} documents, {made['words']:,} words, "
              f"{made['vocabulary']:,} distinct, {record['queries']:,} queries{extra}; "
              f"{record['seconds']['documents_per_second']:,} documents/s)")
    elif args.command == "shards":
        from indexing.shards_cli import run

        return run(args)
    return 0


def _add_update_parsers(sub: Any) -> None:
    add = sub.add_parser("add", help="add or replace documents in an index (live update)",
                         description="Add documents to an index, or replace those whose docno it holds, as one "
                                     "batch: BM25 and vectors (encoded with the index's encoder). The batch is "
                                     "durable and visible whole when the command ends; a bad document rejects "
                                     "the whole batch.")
    add.add_argument("--index", required=True, help="index directory")
    add.add_argument("--docs", required=True,
                     help="documents: JSONL with docno (or _id/id), title, text (or contents), or a BEIR directory")
    delete = sub.add_parser("delete", help="delete documents from an index (live update)",
                            description="Delete documents by docno, as one batch; an unknown docno changes nothing.")
    delete.add_argument("--index", required=True, help="index directory")
    delete.add_argument("docnos", nargs="+", metavar="DOCNO", help="documents to delete")
    compact = sub.add_parser("compact", help="fold an index's live updates back into one plain index",
                             description="Merge Lucene into one segment and write one forward index without the "
                                         "deleted documents, atomically; an ANN index is dropped (rebuild it with "
                                         "ff-index ann build).")
    compact.add_argument("--index", required=True, help="index directory")


def _update(args: argparse.Namespace) -> int:
    """``ff-index add|delete|compact``; a failed update prints one line and exits 1."""
    from pathlib import Path

    from indexing import updates

    try:
        if args.command == "add":
            docs = updates.read_documents(Path(args.docs))
            result = updates.apply_updates(args.index, docs)
            print(f"{args.index}: generation {result.generation}: {result.added:,} added, {result.replaced:,} "
                  f"replaced; {result.documents:,} documents")
        elif args.command == "delete":
            result = updates.apply_updates(args.index, deletes=args.docnos)
            print(f"{args.index}: generation {result.generation}: {result.deleted:,} deleted; "
                  f"{result.documents:,} documents")
        else:
            had_ann = (Path(args.index) / "ann").is_dir()
            manifest = updates.compact(args.index)
            if manifest is None:
                print(f"{args.index}: no live updates to compact")
            else:
                print(f"{args.index}: compacted ({manifest['bm25']['documents']:,} documents)"
                      + ("; the ANN index was dropped: rebuild it with ff-index ann build" if had_ann else ""))
    except updates.UpdateFailed as err:
        print(f"ff-index: error: {err}", file=sys.stderr)
        return 1
    return 0


def _add_ann_parser(sub: Any) -> None:
    from ranker.ann import SQ_MIN_VECTORS

    ann = sub.add_parser("ann", help="approximate dense retrieval: build or verify <index>/ann (FAISS)",
                         description="An ANN index over the forward index's vectors, used by --mode dense and "
                                     "hybrid, ff-rank tune --dense-k and ff-serve when it exists (--exact forces "
                                     "the exact scan).")
    commands = ann.add_subparsers(dest="ann_command", required=True)
    build = commands.add_parser(
        "build", help="build <index>/ann",
        description=f"Defaults by collection size: --type auto is ivf (IVF, flat codes) below {SQ_MIN_VECTORS:,} "
                    "vectors and ivfsq8 (IVF, 8-bit scalar-quantised codes) from there on; nlist = the power of "
                    "two nearest 4*sqrt(vectors) (halved while a list would get under 39 training vectors), "
                    "nprobe = nlist/7 (at least 8); ivfpq (IVF-PQ): dim/8 bytes per "
                    "vector; hnsw: M 32, efConstruction 80, efSearch 256. Every type is memory-mapped (every "
                    "worker shares its pages). FAISS proposes "
                    "--shortlist x k rows (1, ivfpq 4) and the forward index scores them exactly.")
    build.add_argument("--index", required=True, help="index directory with a forward index")
    build.add_argument("--type", choices=["auto", "ivf", "ivfsq8", "ivfpq", "hnsw"], default="auto",
                       help="ANN structure (default: auto, see above)")
    build.add_argument("--nlist", type=int, help="IVF types: inverted lists")
    build.add_argument("--nprobe", type=int, help="IVF types: lists visited per query (default nlist/7)")
    build.add_argument("--pq-m", type=int, help="ivfpq: bytes per vector; must divide the dimension")
    build.add_argument("--hnsw-m", type=int, help="hnsw: neighbours per node (default 32)")
    build.add_argument("--ef-construction", type=int, help="hnsw: build-time search width (default 80)")
    build.add_argument("--ef-search", type=int, help="hnsw: query-time search width, at least (default 256)")
    build.add_argument("--shortlist", type=float, help="rows asked from FAISS per result row (default 1, ivfpq 4)")
    build.add_argument("--train-size", type=int, help="IVF types: training sample (default 40 per list)")
    build.add_argument("--seed", type=int, help="training sample seed (default 0)")
    build.add_argument("--force", action="store_true", help="replace an existing ANN index")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    verify = commands.add_parser("verify", help="check <index>/ann against its manifest and the vectors")
    verify.add_argument("--index", required=True, help="index directory with an ANN index")


def _ann(args: argparse.Namespace) -> None:
    if args.ann_command == "build":
        from indexing.ann_build import build_ann

        manifest = build_ann(args.index, type=args.type, force=args.force, progress=not args.quiet,
                             nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m, hnsw_m=args.hnsw_m,
                             ef_construction=args.ef_construction, ef_search=args.ef_search,
                             shortlist=args.shortlist, train_size=args.train_size, seed=args.seed)
        print(f"wrote {args.index}/ann ({manifest['params']['type']}, {manifest['vectors']:,} vectors, "
              f"{manifest['file']['bytes']:,} bytes)")
        return
    from ranker.ann import AnnIndex
    from ranker.forward_index import ForwardIndex

    ann = AnnIndex.open(args.index, ForwardIndex.open(args.index), verify=True)
    print(f"{ann.path}: ok ({ann.params.type}, {ann.faiss_index.ntotal:,} vectors, checksum matches)")


def _build(args: argparse.Namespace, build_index: Any) -> dict[str, Any]:
    """``ff-index build``; with ``--quantize``, a float index in a hidden sibling, then quantised into place."""
    from pathlib import Path

    options = dict(threads=args.threads, progress=not args.quiet, encoder=None if args.no_vectors else args.encoder,
                   passage_words=args.passage_words, stride=args.stride, max_seq_length=args.max_seq_length,
                   dtype=args.dtype, batch_size=args.batch_size, device=args.device, runner=args.runner,
                   ray_address=args.ray_address, ray_actors=args.ray_actors)
    if not args.quantize:
        if args.pq_m is not None or args.opq:
            raise InputError("--pq-m and --opq need --quantize pq")
        return build_index(args.corpus, args.index, force=args.force, **options)
    if args.no_vectors:
        raise InputError("--quantize needs vectors; drop --no-vectors")
    if args.quantize != "pq" and (args.pq_m is not None or args.opq):
        raise InputError("--pq-m and --opq need --quantize pq")
    import shutil

    from ranker.atomic import check_target
    from indexing.quantize import quantize_index

    target = Path(args.index)
    check_target(target, args.force)  # fail before encoding, not after
    floats = target.parent / f".{target.name}.unquantized"  # fixed name: an interrupted encoding resumes
    build_index(args.corpus, floats, force=True, **options)
    try:
        return quantize_index(floats, target, args.quantize, m=args.pq_m, opq=args.opq, force=args.force)
    finally:
        shutil.rmtree(floats, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
