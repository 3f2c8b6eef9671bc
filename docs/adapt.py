"""Regenerate docs/adapt.md: all-MiniLM-L6-v2 pruned to 4 layers and adapted to a collection as its query
encoder without labels (``ff-train adapt``), against the shipped 6 layers on the same index.

    python docs/adapt.py --data ../shared/data/cranfield --index work/cranfield --work work/adapt-cranfield \\
        [--also ../shared/data/scifact=work/scifact] --out docs/adapt.md

The index (BM25 + the shipped model's vectors) is copied to ``<work>/index`` once; the source is never
written. Each recipe runs ``ff-train adapt`` on the copy into ``<work>/<key>`` (the first recipe with
``--install``, so the copy's queries are then encoded by it); a recipe that ran to the end is reused on
the next run (``<work>/<key>.run.json`` holds its command and adapt's defaults), so the script can be stopped and started
again. Every query encoder is evaluated on the test split as ``ff-rank run --mode ff`` ranks by default
(BM25's top 1,000, min-max normalisation, alpha 0.35; no tuning: Cranfield has no training split), the
documents keeping the index's vectors; ``--also DATA=INDEX`` adds other collections (their own index of
the shipped model's vectors: does the adapted encoder travel?). Query encoding is timed for every model
in the same run, in alternating rounds (one query at a time, one thread, PyTorch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ALPHA = 0.35  # ff-rank run --mode ff's default, with min-max normalisation
KEEP = 4
# key -> (what it is, ff-train adapt options besides --index, --keep, --out); the first is the recipe the
# README quotes and is installed as the index's query encoder
RECIPES: dict[str, tuple[str, list[str]]] = {
    "minilm-4": ("defaults: query-like texts (titles, first 3 sentences), at most 7 epochs, batch 64, lr 1e-3, "
                 "64 tokens, least-squares start", []),
    "minilm-4-short": ("the same, 2 epochs at lr 2e-4", ["--epochs", "2", "--lr", "2e-4", "--cache-dir",
                                                         "{work}/minilm-4.teacher-cache"]),
}
ROUNDS = 5  # latency rounds


def ff_train(*args: str) -> float:
    """Run ``ff-train`` with ``args`` in a fresh process; returns the seconds it took."""
    print("$ ff-train " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, check=True)
    return time.perf_counter() - start


def adapt_defaults() -> dict:
    """``ff-train adapt``'s default settings: a recipe's command means another run when they change."""
    import dataclasses

    from training.adapt import AdaptConfig

    defaults = {f.name: f.default for f in dataclasses.fields(AdaptConfig) if f.default is not dataclasses.MISSING}
    return json.loads(json.dumps(defaults))  # as the record file holds them


def adapted(key: str, index: Path, work: Path, install: bool) -> dict:
    """Run recipe ``key`` (or reuse its earlier run); returns its record: command, wall seconds, training summary."""
    out = work / key
    options = [option.format(work=work) for option in RECIPES[key][1]]
    args = ["adapt", "--index", str(index), "--keep", str(KEEP), "--out", str(out), *options]
    if install:
        args.append("--install")
    record_file = work / f"{key}.run.json"
    if record_file.is_file() and (out / "modules.json").is_file():
        record = json.loads(record_file.read_text())
        if record["command"] == args and record.get("defaults") == adapt_defaults():
            if install:
                from ranker.query_encoder import write_query_encoder

                write_query_encoder(index, str(out))
            return record
    seconds = ff_train(*args, "--force", "--quiet")
    summary = json.loads((out / "ff_distillation.json").read_text())
    record = {"command": args, "defaults": adapt_defaults(), "wall_seconds": round(seconds, 1),
              "summary": {k: summary[k] for k in ("texts", "held_out_texts", "steps", "train_seconds",
                                                  "samples_per_second", "held_out", "projection")}}
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


def evaluated(model: str, index: Path, data: Path, also: list[tuple[Path, Path]], work: Path) -> dict:
    """Dense-only and Fast-Forward scores of a query encoder on the test split (and ``also``), cached by fingerprint."""
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from training.evaluate import evaluate_also, evaluate_encoder

    fingerprint = encoder_fingerprint(resolve_encoder(model)).split(":")[1][:16]
    path = work / "reports" / f"{fingerprint}-{'-'.join(d.name for d, _ in also) or 'main'}.json"
    if path.is_file():
        return json.loads(path.read_text())
    report = evaluate_encoder(model, index, data, split="test", tune_split=None, alpha=ALPHA, queries_only=True,
                              latency=False, progress=False, work=work / "eval")
    report["also"] = evaluate_also(model, report, also, work=work / "eval", progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def latencies(models: dict[str, str], queries: list[str]) -> dict[str, float]:
    """Median ms to encode one query (one thread), per model: the median over ``ROUNDS`` alternating rounds."""
    from training.evaluate import encode_latency

    times: dict[str, list[float]] = {key: [] for key in models}
    for _ in range(ROUNDS):
        for key, model in models.items():
            from ranker.encoders import resolve_encoder

            times[key].append(encode_latency(resolve_encoder(model), queries)["median_ms"])
    return {key: statistics.median(values) for key, values in times.items()}


def ff_rank_installed(index: Path, data: Path, work: Path) -> float:
    """nDCG@10 of ``ff-rank run --mode ff`` with its defaults on ``index`` (queries encoded by the installed encoder)."""
    run = work / "ff-installed.trec"
    subprocess.run([sys.executable, "-m", "ranker", "run", "--mode", "ff", "--index", str(index), "--queries",
                    str(data), "--split", "test", "--out", str(run), "--quiet"], cwd=REPO, check=True)
    result = subprocess.run([sys.executable, "-m", "ranker", "eval", "--qrels", str(data), "--split", "test",
                             str(run), "-m", "nDCG@10", "--json"], cwd=REPO, check=True, capture_output=True,
                            text=True)
    return float(json.loads(result.stdout)["measures"]["nDCG@10"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cranfield", help="BEIR directory (its test split)")
    parser.add_argument("--index", default="work/cranfield", help="index of --data built by ff-index build "
                                                                  "(BM25 + the shipped model's vectors); not modified")
    parser.add_argument("--work", default="work/adapt-cranfield", help="index copy, models, reports")
    parser.add_argument("--also", nargs="*", default=[], metavar="DATA=INDEX",
                        help="other collections to evaluate the encoders on (each with its own index)")
    parser.add_argument("--only", nargs="*", help="run only these recipes (by key; the first always runs)")
    parser.add_argument("--out", default="docs/adapt.md")
    args = parser.parse_args()
    from ranker.machine import describe_machine
    from ranker.topics import read_queries
    from training.evaluate import parse_also

    data, work = Path(args.data), Path(args.work)
    also = parse_also(args.also)
    index = work / "index"
    if not (index / "manifest.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        shutil.copytree(args.index, index)
        for leftover in ("query_encoder.json", "tuning.json"):
            (index / leftover).unlink(missing_ok=True)
    keys = [k for i, k in enumerate(RECIPES) if i == 0 or args.only is None or k in args.only]
    runs = {key: adapted(key, index, work, install=i == 0) for i, key in enumerate(keys)}
    models = {"original": "default", **{key: str(work / key) for key in keys}}
    reports = {key: evaluated(model, index, data, also, work) for key, model in models.items()}
    installed = ff_rank_installed(index, data, work)
    machine = describe_machine()
    speed = latencies(models, read_queries(data, split="test")["query"].astype(str).tolist())
    Path(args.out).write_text(render(args, keys, runs, reports, speed, installed, machine), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def render(args: argparse.Namespace, keys: list[str], runs: dict, reports: dict, speed: dict, installed: float,
           machine: str) -> str:
    """The Markdown page."""
    name = Path(args.data).name
    original = reports["original"]
    lines = [
        f"# A pruned query encoder adapted to {name}, without labels",
        "",
        f"Regenerated by `make adapt-docs` (`python docs/adapt.py`) on {dt.date.today().isoformat()} ({machine}). "
        f"all-MiniLM-L6-v2, which encoded the index's documents, is pruned to its first {KEEP} layers and distilled "
        f"from the full model on {name}'s own texts by `ff-train adapt` (query-like texts, each document's title "
        "and first sentences, read from the documents the index stores; no queries, no judgements); the documents "
        "keep the 6-layer vectors. "
        f"Every row is the {original['queries']} test queries ranked as `ff-rank run --mode ff` ranks by default "
        f"(BM25's top 1,000, min-max normalisation, alpha {ALPHA}). Encoding: one query at a time on one thread "
        f"(PyTorch), the median of {ROUNDS} alternating rounds over the test queries, all models in the same run.",
        "",
        "| row | query encoder | layers | dense nDCG@10 | FF nDCG@10 | FF R@100 | encode ms | speed-up | "
        "held-out loss: start → best (step) | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = speed["original"]
    for key in ["original", *keys]:
        r = reports[key]
        dense, ff = r["scores"]["dense"], r["scores"]["fast_forward"]
        if key == "original":
            label, held, seconds = "all-MiniLM-L6-v2 as shipped (encoded the documents)", "", "0"
        else:
            label = RECIPES[key][0]
            h = runs[key]["summary"]["held_out"]
            held = (f"{h['start_loss']:.4f} → {h['best_loss']:.4f} ({h['best_step']} of "
                    f"{runs[key]['summary']['steps']}{', stopped early' if h['stopped_early'] else ''})")
            seconds = f"{runs[key]['wall_seconds']:.0f}"
        lines.append(f"| {key} | {label} | {r['layers']} | {dense['nDCG@10']:.4f} | {ff['nDCG@10']:.4f} | "
                     f"{ff['R@100']:.4f} | {speed[key]:.2f} | {base / speed[key]:.2f}× | {held} | {seconds} |")
    lines += ["", f"BM25 alone: nDCG@10 {original['scores']['bm25']['nDCG@10']:.4f}. "
              f"`ff-rank run --mode ff` on the index after `--install` (queries encoded by the `{keys[0]}` model, "
              f"read from the index): nDCG@10 {installed:.4f}.", ""]
    if original.get("also"):
        lines += ["## Other collections", "",
                  "The same query encoders on other collections' test queries, against those indexes' own vectors of "
                  f"the shipped model (alpha {ALPHA}, min-max): what adapting to {name} costs elsewhere.", "",
                  "| row | " + " | ".join(f"{o['name']} dense | {o['name']} FF" for o in original["also"]) + " |",
                  "|---|" + "---|---|" * len(original["also"])]
        for key in ["original", *keys]:
            cells = [f"{o['scores']['dense']['nDCG@10']:.4f} | {o['scores']['fast_forward']['nDCG@10']:.4f}"
                     for o in reports[key]["also"]]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Commands", ""]
    for key in keys:
        command = " ".join(shlex.quote(a) for a in runs[key]["command"])
        s = runs[key]["summary"]
        lines.append(f"- `{key}`: `ff-train {command}` ({s['texts']:,} training and {s['held_out_texts']:,} "
                     f"held-out texts, {s['steps']} steps, {s['samples_per_second']:.1f} texts/s)")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
