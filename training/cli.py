"""``ff-train``: prune an encoder (``prune``), hold out a dev split (``dev-split``), mine BM25 hard
negatives (``mine``), distil a teacher into it (``distill``), train it (``train``), train a query encoder
against an index's vectors (``query-tune``), adapt a pruned query encoder to an index's collection
without labels (``adapt``), measure it (``evaluate``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from ranker.errors import InputError, cli_entry
from training.adapt import SOURCES, AdaptConfig
from training.config import ALSO_ALPHA, OPTIMIZERS, TrainingConfig
from training.distill import DISTANCES, DistillConfig
from training.query_tuning import QueryTuneConfig
from training.train import DRO_MODES, PRECISIONS, TrainConfig

POOLINGS = ("mean", "cls", "lasttoken", "weightedmean")  # training.models.POOLING_MODES, without importing it


def make_parser() -> argparse.ArgumentParser:
    """The ``ff-train`` argument parser."""
    parser = argparse.ArgumentParser(prog="ff-train", description="Build encoders for Fast-Forward indexes.")
    sub = parser.add_subparsers(dest="command", required=True)

    prune = sub.add_parser("prune", help="keep the first layers of an encoder or decoder LLM",
                           description="Keep the first N transformer layers and save a sentence-transformers "
                                       "model. --l3prune picks N from the untrained model's contrastive loss at "
                                       "every layer (L3 Prune) on --data.")
    prune.add_argument("--model", help="model directory (default: the packaged all-MiniLM-L6-v2)")
    how = prune.add_mutually_exclusive_group(required=True)
    how.add_argument("--keep", type=int, metavar="N", help="keep the first N layers")
    how.add_argument("--ratio", type=float, metavar="P", help="drop the last fraction P of the layers")
    how.add_argument("--l3prune", choices=["small", "large"],
                     help="keep up to the lowest-loss layer of the first (small) or second (large) half")
    prune.add_argument("--out", required=True, help="model directory to write")
    prune.add_argument("--pooling", choices=POOLINGS,
                       help="replace the pooling (lasttoken: the last non-padding token, e.g. EOS; weightedmean: "
                            "position-weighted mean, for decoders) (default: keep the model's)")
    l3 = prune.add_argument_group("L3 Prune")
    l3.add_argument("--data", help="(query, positive) pairs: BEIR directory, .jsonl or .tsv (see train --data)")
    l3.add_argument("--split", default="train", help="BEIR split (default: train)")
    l3.add_argument("--batches", type=int, default=100, help="sampled batches (default: 100)")
    l3.add_argument("--batch-size", type=int, default=32, help="pairs per batch (default: 32)")
    l3.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    l3.add_argument("--plot", help="write the loss-per-layer plot to this PNG")
    prune.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    prune.add_argument("--force", action="store_true", help="replace an existing model directory")
    prune.add_argument("--quiet", action="store_true", help="no progress bar")

    mine = sub.add_parser("mine", help="mine hard negatives from a BM25 index into a training JSONL",
                          description="For every judged-relevant (query, document) pair of a BEIR split, take the "
                                      "best BM25 documents not judged relevant to the query as negatives.")
    mine.add_argument("--index", required=True, help="index directory built by ff-index build")
    mine.add_argument("--queries", required=True, help="BEIR directory (queries, qrels, corpus)")
    mine.add_argument("--split", default="train", help="split to mine (default: train)")
    mine.add_argument("--depth", type=int, default=30, help="BM25 results searched per query (default: 30)")
    mine.add_argument("--negatives", type=int, default=1, help="negatives (rows) per relevant pair (default: 1)")
    mine.add_argument("--group-by", choices=["length"],
                      help="add a group field for --dro group: the query's length bucket (short <= 9 words, "
                           "medium <= 14, long)")
    mine.add_argument("--out", required=True, help="JSONL file to write (.gz works)")
    mine.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="search threads")
    mine.add_argument("--quiet", action="store_true", help="no progress bar")

    dev = sub.add_parser("dev-split", help="hold out part of a BEIR split's queries as a dev split",
                         description="Write a BEIR directory linking to --data's corpus, queries and other splits, "
                                     "with --split's qrels divided into --split (kept) and --dev (held out), for "
                                     "alpha tuning and model selection on queries the model never trained on.")
    dev.add_argument("--data", required=True, help="BEIR directory")
    dev.add_argument("--out", required=True, help="BEIR directory to write (links, no copies)")
    dev.add_argument("--split", default="train", help="split to divide (default: train)")
    dev.add_argument("--dev", default="dev", help="name of the held-out split (default: dev)")
    dev.add_argument("--fraction", type=float, default=0.15, help="share of queries held out (default: 0.15)")
    dev.add_argument("--seed", type=int, default=0, help="which queries are held out (default: 0)")
    dev.add_argument("--force", action="store_true", help="replace an existing --out")

    dis = sub.add_parser("distill", help="train a (pruned) student to reproduce a teacher's embeddings",
                         description="Distil without labels: the teacher encodes a corpus and its queries once "
                                     "(cached), the student learns to reproduce those embeddings "
                                     "(sentence-transformers' EmbedDistillLoss).")
    dis.add_argument("--texts", required=True,
                     help="BEIR directory (its documents and --query-splits queries), a .jsonl with a 'text' field, "
                          "or a text file with one text per line")
    dis.add_argument("--model", help="the student (default: the packaged all-MiniLM-L6-v2)")
    dis.add_argument("--teacher", help="the teacher (default: the packaged all-MiniLM-L6-v2)")
    dis.add_argument("--query-splits", nargs="*", default=["train"],
                     help="BEIR splits whose queries are added to the texts (default: train; none: documents only)")
    dis.add_argument("--short-texts", action="store_true",
                     help="from a BEIR directory take query-like texts (titles and the first 3 sentences of each "
                          "document) instead of whole documents: for a query encoder (ff-index query-encoder)")
    dis.add_argument("--distance", choices=DISTANCES, default="cosine",
                     help="distance between student and teacher embeddings (default: cosine)")
    dis.add_argument("--max-seq-length", type=int, help="truncate texts to this many tokens (default: the model's)")
    dis.add_argument("--init-projection", action="store_true",
                     help="first fit a linear map from the student's to the teacher's embeddings by least squares "
                          "and append it to the student (Dense + Normalize), then train")
    dis.add_argument("--ridge", type=float, default=1e-3, help="ridge penalty of --init-projection (default: 1e-3)")
    dis.add_argument("--max-texts", type=int, help="distil on a fixed-seed sample of this many texts")
    dis.add_argument("--cache-dir", help="teacher embedding cache (default: <out>.teacher-cache)")
    _add_held_out_options(dis, DistillConfig)
    _add_training_options(dis, DistillConfig, items="texts", batch="texts per step")

    ad = sub.add_parser("adapt", help="adapt a pruned query encoder to an index's own collection, without labels",
                        description="Prune the index's encoder (the one that built its vectors) to its first N "
                                    "layers and distil it from that encoder on the index's own texts: query-like "
                                    "texts made from the documents it stores (titles, first sentences) and, with "
                                    "--texts, the documents themselves. No "
                                    "queries or judgements needed. Part of the documents is held out: training stops "
                                    "early on their distillation loss and keeps the best weights. --install makes "
                                    "the result the index's query encoder (as ff-index query-encoder does).")
    ad.add_argument("--index", required=True, help="index directory built by ff-index build (with vectors)")
    ad.add_argument("--keep", type=int, required=True, metavar="N", help="keep the first N layers")
    ad.add_argument("--model", help="encoder to prune (default: the index's encoder, which is always the teacher)")
    ad.add_argument("--install", action="store_true", help="record the result as the index's query encoder")
    ad.add_argument("--texts", choices=SOURCES, default="query-like", dest="sources",
                    help="what to learn from: query-like texts made from the stored documents (title and first "
                         "sentences; short, so cheap to train on), the whole documents, or both (default: "
                         "query-like)")
    ad.add_argument("--sentences", type=int, default=3, help="first sentences per document taken as query-like "
                                                             "texts (default: 3)")
    ad.add_argument("--distance", choices=DISTANCES, default="cosine",
                    help="distance between student and teacher embeddings (default: cosine)")
    ad.add_argument("--init-projection", action=argparse.BooleanOptionalAction, default=True,
                    help="first fit a least-squares linear map from the pruned model's to the teacher's embeddings "
                         "and append it (default: on)")
    ad.add_argument("--ridge", type=float, default=1e-3, help="ridge penalty of --init-projection (default: 1e-3)")
    ad.add_argument("--max-seq-length", type=int, default=AdaptConfig.max_seq_length,
                    help="truncate texts to this many tokens, in training and in the saved query encoder "
                         "(default: %(default)s; queries are short)")
    ad.add_argument("--max-texts", type=int, help="train on a fixed-seed sample of this many texts")
    ad.add_argument("--cache-dir", help="teacher embedding cache (default: <out>.teacher-cache)")
    _add_held_out_options(ad, AdaptConfig)
    _add_training_options(ad, AdaptConfig, items="texts", batch="texts per step")

    qt = sub.add_parser("query-tune", help="train a query encoder against an index's fixed document vectors",
                        description="Contrastive training of the query side only: each training query must score "
                                    "its relevant document's stored vector above its BM25 hard negatives' and the "
                                    "batch's other documents' (InfoNCE). Documents never pass through the model, so "
                                    "steps are cheap. The result is a query encoder for that index "
                                    "(ff-index query-encoder).")
    qt.add_argument("--data", required=True, help="JSONL as ff-train mine writes it (query, pos_id, neg_id)")
    qt.add_argument("--index", required=True, help="index directory whose forward index holds the documents")
    qt.add_argument("--model", help="query encoder to start from, e.g. a pruned student from ff-train distill "
                                    "(default: the index's encoder)")
    qt.add_argument("--negatives", type=int, default=4, help="hard negatives per query, at most (default: 4)")
    qt.add_argument("--scale", type=float, default=20.0, help="InfoNCE scale, 1/temperature (default: 20)")
    qt.add_argument("--distill-weight", type=float, default=0.0,
                    help="add this weight times (1 - cosine) to the index encoder's query embedding (default: 0)")
    stop = qt.add_argument_group("early stopping on another collection")
    stop.add_argument("--dev", metavar="DATA=INDEX",
                      help="a BEIR collection not trained on and its index, its vectors from the --index's encoder: "
                           "its Fast-Forward nDCG@10 is measured before the first step and every --eval-steps, "
                           "and the weights where it was highest are saved")
    stop.add_argument("--dev-split", default="test", help="the dev collection's queries (default: test)")
    stop.add_argument("--dev-alpha", type=float, default=0.35,
                      help="Fast-Forward's alpha there, min-max fusion (default: 0.35)")
    stop.add_argument("--eval-steps", type=int, help="steps between evaluations (default: four per epoch)")
    stop.add_argument("--patience", type=int, default=3,
                      help="stop after this many evaluations without a new best (default: 3)")
    _add_training_options(qt, QueryTuneConfig, items="queries", batch="queries per step")

    ev = sub.add_parser("evaluate", help="dense-only and Fast-Forward quality and query-encoding latency of a model",
                        description="Encode the corpus with --model (cached under --work), tune alpha on "
                                    "--tune-split, evaluate BM25, dense-only and Fast-Forward runs of --split with "
                                    "per-group (query length) nDCG@10 and the worst group, and time query encoding.")
    ev.add_argument("--model", nargs="+", required=True, help="model directories ('default': the packaged MiniLM)")
    ev.add_argument("--index", required=True, help="index directory built by ff-index build (its BM25 part is used)")
    ev.add_argument("--data", required=True, help="BEIR directory (corpus, queries, qrels)")
    ev.add_argument("--split", default="test", help="evaluation split (default: test)")
    how = ev.add_mutually_exclusive_group()
    how.add_argument("--tune-split", default="dev", help="split to tune alpha on (default: dev)")
    how.add_argument("--alpha", type=float, help="use this alpha (min-max normalisation) instead of tuning")
    ev.add_argument("--queries-only", action="store_true",
                    help="the models encode queries only; documents keep the index's vectors (query encoders "
                         "distilled from the index's encoder)")
    ev.add_argument("--also", nargs="+", default=[], metavar="DATA=INDEX",
                    help="also report dense-only and Fast-Forward nDCG@10 on these collections (a BEIR directory "
                         "and the index built from it; its --split), beside the main collection's")
    ev.add_argument("--also-alpha", type=_also_alpha, default=ALSO_ALPHA, metavar="ALPHA|same",
                    help="Fast-Forward's alpha on the --also collections, min-max fusion, or 'same': the main "
                         "collection's alpha and fusion (default: %(default)s, the default a user who did not tune "
                         "there gets)")
    ev.add_argument("--work", default="work/eval", help="where forward indexes of the models go (default: work/eval)")
    ev.add_argument("--json", help="also write the reports as JSON to this file")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    tr = sub.add_parser("train", help="contrastive training with sentence-transformers' trainer",
                        description="Train with InfoNCE over in-batch and hard negatives "
                                    "(MultipleNegativesRankingLoss) and save a sentence-transformers model "
                                    "with its run config (ff_training.json).")
    tr.add_argument("--data", required=True,
                    help="BEIR directory (relevant pairs of --split), or a JSONL (query, positive[, negative]"
                         "[, group]) as ff-train mine writes, or a TSV query<TAB>positive[<TAB>negative[<TAB>group]]")
    tr.add_argument("--model", help="model directory to start from (default: the packaged all-MiniLM-L6-v2)")
    tr.add_argument("--split", default="train", help="BEIR split (default: train)")
    tr.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    tr.add_argument("--scale", type=float, default=20.0, help="InfoNCE scale, 1/temperature (default: 20)")
    tr.add_argument("--max-seq-length", type=int, help="truncate inputs to this many tokens (default: the model's)")
    tr.add_argument("--dro", choices=DRO_MODES, default="none",
                    help="group: group DRO over the data's group field (default: none)")
    tr.add_argument("--group-key", default="group", help="JSONL field holding the group (default: group)")
    tr.add_argument("--dro-eta", type=float, default=0.01, help="group DRO step size (default: 0.01)")
    tr.add_argument("--distill-from", metavar="TEACHER",
                    help="also match this model's embeddings of the training texts (MSE; same dimension)")
    tr.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss (default: 1)")
    tr.add_argument("--lora", action="store_true",
                    help="train LoRA adapters on every linear layer instead of all weights (needs the 'lora' "
                         "extra); merged into the weights before saving")
    tr.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: 16)")
    tr.add_argument("--lora-alpha", type=int, default=32, help="LoRA scaling alpha (default: 32)")
    tr.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="training precision; SAM refuses fp16 (default: fp32)")
    tr.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (default: 0, none)")
    tr.add_argument("--checkpoint-dir", help="checkpoint directory (default: <out>.checkpoints)")
    tr.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in --checkpoint-dir")
    _add_training_options(tr, TrainConfig, items="examples", batch="examples per micro-batch")
    return parser


def _add_held_out_options(parser: argparse.ArgumentParser, config: type[DistillConfig]) -> None:
    """Early stopping on held-out texts (distill, adapt), with the defaults of ``config``."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    group = parser.add_argument_group("early stopping")
    group.add_argument("--held-out", type=float, default=defaults["held_out"],
                       help="share of the texts (adapt: of the documents) kept out of training; their distillation "
                            "loss is measured before the first step and every --eval-steps, and the weights where "
                            "it was lowest are saved (default: %(default)s)")
    group.add_argument("--eval-steps", type=int, help="steps between held-out evaluations (default: four per epoch)")
    group.add_argument("--patience", type=int, default=defaults["patience"],
                       help="stop after this many evaluations without a new lowest loss (default: %(default)s)")


def _add_training_options(parser: argparse.ArgumentParser, config: type[TrainingConfig], items: str,
                          batch: str) -> None:
    """Add the options that train, distill and query-tune share, with the defaults of their ``config`` class.

    ``items`` names what an epoch goes over, ``batch`` what a batch holds.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    parser.add_argument("--out", required=True, help="model directory to write")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=float, default=defaults["epochs"],
                     help=f"epochs over the {items} when --max-steps is -1 (default: %(default)s)")
    opt.add_argument("--max-steps", type=int, default=defaults["max_steps"],
                     help="optimizer steps (default: %(default)s, use --epochs)")
    opt.add_argument("--batch-size", type=int, default=defaults["batch_size"], help=f"{batch} (default: %(default)s)")
    opt.add_argument("--lr", type=float, default=defaults["learning_rate"], dest="learning_rate",
                     help="peak learning rate (default: %(default)s)")
    opt.add_argument("--warmup", type=float, default=defaults["warmup"],
                     help="linear warm-up: a fraction of the steps (< 1) or a number of steps (default: %(default)s)")
    opt.add_argument("--weight-decay", type=float, default=defaults["weight_decay"],
                     help="AdamW weight decay (default: %(default)s)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults["optimizer"],
                     help="sam/asam: sharpness-aware minimisation around AdamW, two passes per step "
                          "(default: %(default)s)")
    opt.add_argument("--rho", type=float, default=defaults["rho"],
                     help="SAM/ASAM neighbourhood radius, positive (default: %(default)s)")
    opt.add_argument("--seed", type=int, default=defaults["seed"],
                     help="seed for initialisation and data order (default: %(default)s)")
    opt.add_argument("--logging-steps", type=int, default=defaults["logging_steps"],
                     help="log every N steps (default: %(default)s)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--force", action="store_true", help="replace an existing model directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


@cli_entry("ff-train")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ff-train``."""
    args = make_parser().parse_args(argv)
    if getattr(args, "quiet", False) and args.command in ("prune", "evaluate"):
        _quiet()
    commands = {"prune": _prune, "mine": _mine, "train": _train, "dev-split": _dev_split, "distill": _distill,
                "query-tune": _query_tune, "adapt": _adapt, "evaluate": _evaluate}
    try:
        return commands[args.command](args)
    except ValueError as err:  # option values that the library rejects
        if isinstance(err, InputError):
            raise
        raise InputError(str(err)) from None


def _also_alpha(value: str) -> float | None:
    """``--also-alpha``: a number in [0, 1], or ``same`` (None)."""
    if value == "same":
        return None
    try:
        alpha = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'same', got {value!r}") from None
    if not 0 <= alpha <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'same', got {value!r}")
    return alpha


def _training_config(config: type[TrainingConfig], args: argparse.Namespace, **options: object) -> Any:
    """The run config of a training command from its options (plus ``options``), validated before anything
    is loaded; with --quiet, progress bars are off from here on."""
    names = {f.name for f in dataclasses.fields(config)}
    settings = {k: v for k, v in vars(args).items() if k in names}
    run = config(**{**settings, "progress": not args.quiet, **options})
    run.validate()
    if args.quiet:
        _quiet()
    return run


def _quiet() -> None:
    """No progress bars from transformers / huggingface_hub (loading and saving weights)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging

    logging.disable_progress_bar()


def _prune(args: argparse.Namespace) -> int:
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from training.models import check_out, load_model, pooling_mode, save_model
    from training.pruning import keep_for_ratio, num_layers, prune_layers

    if args.l3prune and not args.data:
        raise InputError("--l3prune needs --data (query, positive pairs)")
    if args.data and not args.l3prune:
        raise InputError("--data is only used with --l3prune")
    check_out(args.out, args.force)
    model = load_model(args.model, device=args.device)
    total = num_layers(model)
    source = resolve_encoder(args.model)
    record: dict = {"source": str(source), "source_fingerprint": encoder_fingerprint(source), "layers_before": total}
    if args.keep is not None:
        keep, record["method"] = args.keep, "keep"
    elif args.ratio is not None:
        keep, record["method"] = keep_for_ratio(total, args.ratio), f"ratio {args.ratio}"
    else:
        keep = _l3prune(args, model, record)
    prune_layers(model, keep, pooling=args.pooling)
    record.update(layers=keep, pooling=pooling_mode(model))
    save_model(model, args.out, force=args.force, extra={"ff_pruning.json": record})
    print(f"wrote {args.out} ({keep} of {total} layers, {record['pooling']} pooling)")
    return 0


def _l3prune(args: argparse.Namespace, model: object, record: dict) -> int:
    from training.data import query_positive_pairs, read_training_data
    from training.l3prune import layer_losses, plot_layer_losses

    pairs = query_positive_pairs(read_training_data(args.data, split=args.split))
    result = layer_losses(model, pairs, batch_size=args.batch_size, batches=args.batches,  # type: ignore[arg-type]
                          seed=args.seed, progress=not args.quiet)
    print(result.table())
    if args.plot:
        plot_layer_losses(result, args.plot)
        print(f"wrote {args.plot}")
    record.update(method=f"l3prune {args.l3prune}", l3prune=result.to_dict())
    return result.choose(args.l3prune)


def _mine(args: argparse.Namespace) -> int:
    from training.mine import mine_negatives, write_jsonl

    rows = mine_negatives(args.index, args.queries, split=args.split, depth=args.depth, negatives=args.negatives,
                          threads=args.threads, progress=not args.quiet)
    if args.group_by:
        from training.groups import group_of

        rows["group"] = [group_of(query, args.group_by) for query in rows["query"]]
    write_jsonl(rows, args.out)
    queries = rows["qid"].nunique()
    print(f"wrote {args.out} ({len(rows):,} rows, {queries:,} quer{'y' if queries == 1 else 'ies'})")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    config = _training_config(TrainConfig, args)
    summary = train(config)
    if config.resume and not summary["resumed"]:
        print(f"no checkpoint in {config.checkpoints}: trained from the start")
    print(f"wrote {args.out} ({summary['steps']} steps on {summary['examples']:,} examples, "
          f"train loss {summary['train_loss']:.4f})")
    if "dro_weights" in summary:
        print("group DRO weights: " + json.dumps(summary["dro_weights"]))
    return 0


def _dev_split(args: argparse.Namespace) -> int:
    from training.devsplit import write_dev_split

    counts = write_dev_split(args.data, args.out, split=args.split, dev=args.dev, fraction=args.fraction,
                             seed=args.seed, force=args.force)
    print(f"wrote {args.out} ({', '.join(f'{name}: {n:,} queries' for name, n in counts.items())})")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from training.distill import distill

    summary = distill(_training_config(DistillConfig, args, query_splits=tuple(args.query_splits)))
    held = summary.get("held_out")
    best = (f", held-out loss {held['start_loss']:.4f} -> {held['best_loss']:.4f} at step {held['best_step']}"
            if held else "")
    print(f"wrote {args.out} ({summary['steps']} steps on {summary['texts']:,} texts, "
          f"train loss {summary['train_loss']:.4f}{best})")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    from training.adapt import adapt

    summary = adapt(_training_config(AdaptConfig, args))
    held = summary["held_out"]
    print(f"wrote {args.out} ({summary['layers']} of {summary['layers_before']} layers; {summary['steps']} steps on "
          f"{summary['texts']:,} texts, {summary['samples_per_second']:.1f} texts/s; held-out loss "
          f"{held['start_loss']:.4f} at the start, {held['best_loss']:.4f} at step {held['best_step']}"
          f"{', stopped early' if held['stopped_early'] else ''})")
    if summary["installed"]:
        print(f"{args.index}: queries are encoded with {summary['installed']['path']}")
    return 0


def _query_tune(args: argparse.Namespace) -> int:
    from training.query_tuning import query_tune

    summary = query_tune(_training_config(QueryTuneConfig, args))
    held = summary.get("held_out")
    best = (f"; {held['measure']} {held['start']:.4f} at the start, {held['best']:.4f} at step "
            f"{held['best_step']}{', stopped early' if held['stopped_early'] else ''}" if held else "")
    print(f"wrote {args.out} ({summary['steps']} steps on {summary['examples']:,} queries with "
          f"{summary['hard_negatives']:,} hard negatives, train loss {summary['train_loss']:.4f}{best})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_also, evaluate_encoder, format_report, format_table, parse_also

    also = parse_also(args.also)
    reports = []
    for model in args.model:
        report = evaluate_encoder(model, args.index, args.data, split=args.split,
                                  tune_split=None if args.alpha is not None else args.tune_split, alpha=args.alpha,
                                  work=args.work, progress=not args.quiet,
                                  queries_only=args.queries_only)
        if also:
            report["also"] = evaluate_also(model, report, also, work=args.work, progress=not args.quiet,
                                           alpha=args.also_alpha)
        print(format_report(report), flush=True)
        reports.append(report)
    if also or len(reports) > 1:
        print(format_table(reports, os.path.basename(os.path.normpath(args.data))))
    if args.json:

        from ranker.atomic import write_json_atomic

        write_json_atomic(args.json, reports)
        print(f"wrote {args.json}")
    return 0
