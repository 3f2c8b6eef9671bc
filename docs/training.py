"""Regenerate docs/training.md: the pruning / distillation / contrastive-training ablation on SciFact.

    python docs/training.py --data ../shared/data/scifact --index work/scifact --work work/train --out docs/training.md

Every row trains (or reuses) one model with ``ff-train`` and evaluates it with ``ff-train evaluate``:
alpha tuned on a dev slice held out of the train split, everything reported on the test split.
Each finished row is kept under ``<work>/ablation/`` and skipped on the next run, so the script
can be stopped and started again; rows not run yet are listed as such in the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASYMMETRIC = ("teacher", "query", "query-tuned")  # rows evaluated on the index of the fine-tuned 6 layers' vectors
ALSO_ALPHA = 0.35  # Fast-Forward's default alpha, min-max, on the out-of-domain collection (--also-alpha)
DISTILL_WEIGHTS = (1.0, 4.0, 16.0)  # query-tune --distill-weight rows beside the default (0)


def ff_train(*args: str) -> float:
    """Run ``ff-train`` with ``args`` in a fresh process; returns the seconds it took."""
    command = [sys.executable, "-m", "training", *args]
    print("$ ff-train " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - start


def runtime(run_file: Path) -> float:
    """The trainer's own runtime in seconds, from a saved model's run file."""
    history = json.loads(run_file.read_text())["log_history"]
    return float(next((e["train_runtime"] for e in reversed(history) if "train_runtime" in e), 0.0))


def also_names(report: dict) -> list[str]:
    """The other collections a report carries (``ff-train evaluate --also``), by name; only those scored at
    this page's ``ALSO_ALPHA`` with min-max fusion count."""
    return [other["name"] for other in report.get("also", [])
            if other.get("alpha") == ALSO_ALPHA and other.get("normalization") == "minmax"]


def earlier_report(work: Path, model: str, queries_only: bool, also: list[str]) -> dict | None:
    """A report ``ff-train evaluate --json`` already wrote under ``work`` (``report*.json``) for this model,
    with the other collections ``also``."""
    from ranker.encoders import resolve_encoder

    wanted = str(resolve_encoder(model))
    for path in sorted(work.glob("report*.json")):
        for report in json.loads(path.read_text()):
            by_index = report.get("documents_encoded_by") == "the index encoder"
            if (report["model"] == wanted and report["split"] == "test" and by_index == queries_only
                    and also_names(report) == also):
                return report
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/scifact", help="BEIR directory")
    parser.add_argument("--index", default="work/scifact", help="index built by ff-index build (BM25 + 6-layer vectors)")
    parser.add_argument("--work", default="work/train", help="models, data and reports")
    parser.add_argument("--out", default="docs/training.md")
    parser.add_argument("--distill-epochs", type=float, default=1.0)
    parser.add_argument("--train-epochs", type=float, default=1.0)
    parser.add_argument("--query-tune-epochs", type=float, default=3.0)
    parser.add_argument("--also-data", default="../shared/data/cranfield",
                        help="out-of-domain collection every row is also evaluated on (never trained on)")
    parser.add_argument("--also-index", default="work/cranfield",
                        help="its index (BM25; rows that encode documents encode its corpus themselves)")
    parser.add_argument("--only", nargs="*", help="run only these rows (by key)")
    parser.add_argument("--no-l3prune", dest="l3prune", action="store_false",
                        help="skip L3 Prune's per-layer loss table")
    args = parser.parse_args()
    work = Path(args.work)
    data = work / "data"
    reports = work / "ablation"
    reports.mkdir(parents=True, exist_ok=True)
    also_data = Path(args.also_data)
    also_ft = work / f"{also_data.name}-ft"  # its documents encoded by the fine-tuned 6 layers (the teacher)

    def prepare() -> None:
        if not (data / "qrels" / "dev.tsv").exists():
            ff_train("dev-split", "--data", args.data, "--out", str(data), "--force")
        if not (work / "negatives.jsonl").exists():
            ff_train("mine", "--index", args.index, "--queries", str(data), "--split", "train", "--group-by", "length",
                     "--out", str(work / "negatives.jsonl"), "--quiet")
        if not (work / "minilm-4" / "modules.json").exists():
            ff_train("prune", "--keep", "4", "--out", str(work / "minilm-4"), "--force", "--quiet")

    def distilled() -> tuple[Path, float]:
        out = work / "minilm-4-distilled"
        if (out / "modules.json").exists():
            return out, runtime(out / "ff_distillation.json")
        ff_train("distill", "--texts", str(data), "--model", str(work / "minilm-4"), "--init-projection",
                           "--epochs", str(args.distill_epochs), "--cache-dir", str(work / "teacher-cache"),
                           "--out", str(out), "--force", "--quiet")
        return out, runtime(out / "ff_distillation.json")

    def trained(name: str, start: Path, *options: str) -> tuple[Path, float]:
        out = work / name
        if not (out / "modules.json").exists():
            ff_train("train", "--data", str(work / "negatives.jsonl"), "--model", str(start),
                     "--epochs", str(args.train_epochs), "--out", str(out), "--force", "--quiet", *options)
        return out, runtime(out / "ff_training.json")

    def teacher() -> tuple[Path, float]:
        out = work / "minilm-6-ft"
        if not (out / "modules.json").exists():
            ff_train("train", "--data", str(work / "negatives.jsonl"), "--epochs", str(args.train_epochs),
                     "--out", str(out), "--force", "--quiet")
        for corpus, index in ((data, work / "index-ft"), (also_data, also_ft)):
            if not (index / "manifest.json").exists():
                subprocess.run([sys.executable, "-m", "indexing", "build", "--corpus", str(corpus), "--index",
                                str(index), "--encoder", str(out), "--force", "--quiet"], cwd=REPO, check=True)
        return out, runtime(out / "ff_training.json")

    def query_encoder() -> tuple[Path, float]:
        out = work / "minilm-4-query"
        if not (out / "modules.json").exists():
            ff_train("distill", "--texts", str(data), "--short-texts", "--teacher", str(teacher()[0]),
                     "--model", str(work / "minilm-4"), "--init-projection", "--epochs", str(args.distill_epochs),
                     "--lr", "2e-4", "--batch-size", "64", "--cache-dir", str(work / "teacher-cache"),
                     "--out", str(out), "--force", "--quiet")
        return out, runtime(out / "ff_distillation.json")

    def query_tuned(name: str = "minilm-4-query-tuned", *options: str) -> tuple[Path, float]:
        start, seconds = query_encoder()
        out = work / name
        if not (out / "modules.json").exists():
            if not (work / "negatives-8.jsonl").exists():
                ff_train("mine", "--index", args.index, "--queries", str(data), "--split", "train", "--depth", "30",
                         "--negatives", "8", "--out", str(work / "negatives-8.jsonl"), "--quiet")
            ff_train("query-tune", "--data", str(work / "negatives-8.jsonl"), "--index", str(work / "index-ft"),
                     "--model", str(start), "--negatives", "8", "--epochs", str(args.query_tune_epochs),
                     "--lr", "5e-5", "--out", str(out), "--force", "--quiet", *options)
        return out, seconds + runtime(out / "ff_query_tuning.json")

    rows = {
        "original": ("all-MiniLM-L6-v2, 6 layers, as shipped", lambda: ("default", 0.0)),
        "teacher": ("6 layers fine-tuned on BM25 hard negatives", teacher),
        "query": ("4-layer query encoder distilled from the fine-tuned 6 layers (documents: fine-tuned 6 layers)",
                  query_encoder),
        "query-tuned": ("the `query` encoder + `ff-train query-tune` against the fine-tuned 6 layers' document "
                        "vectors (defaults: no distillation term)", query_tuned),
        **{f"query-tuned-w{w:g}": (f"the same with `--distill-weight {w:g}`",
                                  lambda w=w: query_tuned(f"minilm-4-query-tuned-w{w:g}", "--distill-weight", f"{w:g}"))
           for w in DISTILL_WEIGHTS},
        "pruned": ("4 layers, untrained", lambda: (work / "minilm-4", 0.0)),
        "contrastive": ("4 layers + contrastive (hard negatives)",
                        lambda: trained("minilm-4-contrastive", work / "minilm-4")),
        "distill": ("4 layers + distillation (linear map + embedding distillation)", distilled),
        "both": ("4 layers + distillation + contrastive, AdamW",
                 lambda: trained("minilm-4-trained", distilled()[0], "--distill-from", "default")),
        "sam": ("4 layers + distillation + contrastive, SAM (rho 0.05)",
                lambda: trained("minilm-4-sam", distilled()[0], "--distill-from", "default", "--optimizer", "sam")),
        "dro": ("4 layers + distillation + contrastive, group DRO (query length)",
                lambda: trained("minilm-4-dro", distilled()[0], "--distill-from", "default", "--dro", "group")),
    }
    prepare()
    l3 = work / "minilm-l3prune"
    if args.l3prune and not (l3 / "ff_pruning.json").exists():
        ff_train("prune", "--l3prune", "small", "--data", str(data), "--split", "train", "--plot",
                 str(REPO / "docs" / "l3prune-minilm.png"), "--out", str(l3), "--force", "--quiet")
    def run_row(key: str, label: str, build, asymmetric: bool, also: str) -> None:
        """Build the row's model, evaluate it on SciFact test and on ``also`` (DATA=INDEX), keep the report."""
        name = Path(also.partition("=")[0]).name
        report_file = reports / f"{key}.json"
        if report_file.exists() and also_names(json.loads(report_file.read_text())) == [name]:
            return
        model, seconds = build()
        report = earlier_report(work, str(model), asymmetric, [name])  # e.g. from make train-demo
        if report is None:
            index = ["--index", str(work / "index-ft"), "--queries-only"] if asymmetric else ["--index", args.index]
            ff_train("evaluate", "--model", str(model), *index, "--also", also, "--also-alpha", f"{ALSO_ALPHA:g}",
                     "--data", str(data), "--split", "test", "--tune-split", "dev", "--work", str(work / "eval"),
                     "--json", str(report_file) + ".tmp", "--quiet")
            report = json.loads(Path(str(report_file) + ".tmp").read_text())[0]
            Path(str(report_file) + ".tmp").unlink()
        report.update(label=label, train_seconds=round(seconds, 1))
        tuning = Path(str(model)) / "ff_query_tuning.json"
        if tuning.is_file():
            run = json.loads(tuning.read_text())
            report["query_tuning"] = {"steps": run["steps"], "held_out": run.get("held_out")}
        report_file.write_text(json.dumps(report, indent=2) + "\n")

    for key, (label, build) in rows.items():
        if not args.only or key in args.only:
            asymmetric = key in ASYMMETRIC or key.startswith("query-tuned")  # documents: the fine-tuned 6 layers
            run_row(key, label, build, asymmetric, f"{also_data}={also_ft if asymmetric else args.also_index}")

    # Early stopping on the other collection: on half of its queries, reported on the other half.
    halves = work / f"{also_data.name}-halves"
    stopping = {
        "stop-query-tuned": ("`query-tuned` (defaults: a fixed number of steps)", query_tuned),
        "stop-query-tuned-dev": (f"the same, keeping the step with the best {also_data.name.capitalize()} dev-half "
                                 "FF nDCG@10 (`--dev`)",
                                 lambda: query_tuned("minilm-4-query-tuned-dev", "--dev", f"{halves}={also_ft}",
                                                     "--dev-split", "dev")),
    }
    for key, (label, build) in stopping.items():
        if not args.only or key in args.only:
            if not (halves / "qrels" / "dev.tsv").exists():
                ff_train("dev-split", "--data", str(also_data), "--out", str(halves), "--split", "test", "--dev",
                         "dev", "--fraction", "0.5", "--force")
            run_row(key, label, build, True, f"{halves}={also_ft}")
    Path(args.out).write_text(render(rows, stopping, reports, args, l3 / "ff_pruning.json"), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def row_reports(rows: dict, reports: Path):
    """``(key, label, report or None)`` for each of ``rows``, in order (None: not run yet)."""
    for key, (label, _) in rows.items():
        path = reports / f"{key}.json"
        yield key, label, json.loads(path.read_text()) if path.exists() else None


def render(rows: dict, stopping: dict, reports: Path, args: argparse.Namespace, l3_record: Path) -> str:
    """The Markdown page."""
    other = Path(args.also_data).name.capitalize()
    lines = [
        "# Training pruned encoders: ablation on SciFact",
        "",
        "Regenerated by `make train-ablation` (`python docs/training.py`); `make train-demo` runs the rows "
        "`original`, `teacher`, `query` and `query-tuned` (its reports are reused here). Training uses the train "
        "split only: 15% of its queries are held out as a dev split (`ff-train dev-split`) on which alpha and "
        "min-max vs raw fusion are tuned; every number below is on the 300 test queries. Fast-Forward re-ranks "
        "BM25's top 1,000. Encode latency is one query at a time on one CPU thread (median, PyTorch). Worst group: "
        "lowest Fast-Forward nDCG@10 among query-length buckets (short <= 9 words, medium <= 14, long).",
        "",
        f"Settings: contrastive training {args.train_epochs:g} epoch(s) over the mined triples (batch 32, lr 2e-5); "
        f"distillation {args.distill_epochs:g} epoch(s), for the symmetric rows over the corpus and the training "
        "queries (batch 32, lr 1e-4), for the query encoder over query-like texts (titles and first sentences "
        "of the documents, and the training queries; batch 64, lr 2e-4); query-tune "
        f"{args.query_tune_epochs:g} epoch(s) over the training queries with up to 8 BM25 hard negatives each, "
        "against the stored document vectors (batch 32, lr 5e-5).",
        "",
        f"Out of domain: every model is also evaluated on {other}'s test queries ({other} dense and {other} FF), a "
        "collection no row trains on, with Fast-Forward's default settings (alpha 0.35, min-max; `ff-train "
        "evaluate --also`), what a user who serves the model there without tuning gets; "
        f"{other}'s documents are encoded by the row's document encoder (the fine-tuned 6 layers for `teacher`, "
        "`query` and `query-tuned*`).",
        "",
        f"| row | model | dense nDCG@10 | FF nDCG@10 | {other} dense | {other} FF | alpha (dev) | FF R@1000 | "
        "worst group (FF) | encode ms | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, r in row_reports(rows, reports):
        if r is None:
            lines.append(f"| {key} | {label} | not run yet | | | | | | | | |")
            continue
        ff, dense = r["scores"]["fast_forward"], r["scores"]["dense"]
        away = next((o["scores"] for o in r.get("also", []) if o["name"].capitalize() == other), None)
        away_cells = (f"{away['dense']['nDCG@10']:.4f} | {away['fast_forward']['nDCG@10']:.4f}" if away
                      else "not run yet | ")
        worst = r["groups"]["worst"]["fast_forward"]
        worst_value = r["groups"]["nDCG@10"]["fast_forward"][worst]
        lines.append(f"| {key} | {label} | {dense['nDCG@10']:.4f} | {ff['nDCG@10']:.4f} | {away_cells} | "
                     f"{r['alpha']['alpha']:.2f} {r['alpha']['normalization']} | {ff['R@1000']:.4f} | "
                     f"{worst} {worst_value:.4f} | {r['encode_latency']['median_ms']:.2f} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", "Rows `teacher`, `query` and `query-tuned` use an index whose documents the fine-tuned 6-layer model "
              "encoded; in `query` and `query-tuned` the 4-layer student encodes only the queries (`ff-index query-encoder`), which is where "
              "Fast-Forward pays for encoding at query time. The other rows encode documents and queries with "
              "the same model. Encode ms and train s are wall times from the run that built each row: rows are "
              "kept between runs of `make train-ablation` and some ran beside other jobs, so compare them roughly "
              "(the 4-layer rows share one architecture; their encode ms differ by load alone)."]
    def score(key: str, system: str) -> str:
        path = reports / f"{key}.json"
        return f"{json.loads(path.read_text())['scores'][system]['nDCG@10']:.4f}" if path.exists() else "–"

    def away(key: str) -> str:
        path = reports / f"{key}.json"
        also = json.loads(path.read_text()).get("also") if path.exists() else None
        return f"{also[0]['scores']['fast_forward']['nDCG@10']:.4f}" if also else "–"

    lines += ["", "What the rows say: a 4-layer MiniLM that encodes documents too recovers only part of what pruning "
              f"costs in one CPU epoch (`both`: dense {score('both', 'dense')}, FF {score('both', 'fast_forward')}, "
              f"against the shipped 6 layers' FF {score('original', 'fast_forward')}); SAM and group DRO over "
              f"query-length buckets do not improve on it at this size (FF `sam` {score('sam', 'fast_forward')}, `dro` "
              f"{score('dro', 'fast_forward')}; {other} FF {away('sam')} and {away('dro')} against `both`'s "
              f"{away('both')}). Training the "
              "4-layer model as a query encoder against the fixed vectors of the fine-tuned 6 layers "
              f"(`query-tuned`: FF {score('query-tuned', 'fast_forward')}) is what reaches the goal with 4 layers "
              "on the query side."]
    lines += ["", f"Out of domain the picture turns: the 6-layer models keep their {other} FF (`original` "
              f"{away('original')}, `teacher` {away('teacher')}), the 4-layer query encoders distilled on SciFact's "
              f"texts lose about 0.05 (`query` {away('query')}, `query-tuned` {away('query-tuned')}), and pulling "
              "the query embeddings towards the teacher's during query-tune (`--distill-weight`: "
              + ", ".join(f"{w:g}: {away(f'query-tuned-w{w:g}')}" for w in DISTILL_WEIGHTS)
              + ") does not win it back, so the default weight stays 0. The 4-layer models that also encode the "
              f"documents (`distill` {away('distill')}, `both` {away('both')}) show what SciFact-only training "
              "costs elsewhere when the document side changes too. Without training queries for a collection, "
              "adapt the pruned encoder to it instead ([adapt.md](adapt.md))."]
    lines += ["", "BM25 alone on the same queries: "
              + next((f"nDCG@10 {json.loads(p.read_text())['scores']['bm25']['nDCG@10']:.4f}"
                      for p in sorted(reports.glob('*.json'))), "not run yet") + ".", ""]
    lines += render_stopping(stopping, reports, other)
    lines += render_l3prune(l3_record)
    return "\n".join(lines)


def render_stopping(stopping: dict, reports: Path, other: str) -> list[str]:
    """The early-stopping table: query-tune with and without ``--dev`` on half of the other collection's queries."""
    lines = [f"## Early stopping on {other}", "",
             f"`ff-train query-tune --dev DATA=INDEX --dev-split dev` measures the model's Fast-Forward nDCG@10 on "
             f"another collection's queries (alpha 0.35, min-max) before the first step and four times an epoch, and "
             f"keeps the best step. {other}'s test queries are split in two (`ff-train dev-split --split test "
             f"--fraction 0.5`): training stops on the `dev` half, and both rows are scored on the other half "
             f"({other} FF below; SciFact as above).", "",
             f"| row | model | SciFact FF nDCG@10 | {other} dense (other half) | {other} FF (other half) | "
             "best step / steps | train s |",
             "|---|---|---|---|---|---|---|"]
    for key, label, r in row_reports(stopping, reports):
        if r is None:
            lines.append(f"| {key} | {label} | not run yet | | | | |")
            continue
        away = r["also"][0]["scores"]
        run = r.get("query_tuning", {})
        held = run.get("held_out")
        steps = f"{held['best_step']} / {run['steps']}" if held else f"{run.get('steps', '')}"
        lines.append(f"| {key} | {label} | {r['scores']['fast_forward']['nDCG@10']:.4f} | "
                     f"{away['dense']['nDCG@10']:.4f} | {away['fast_forward']['nDCG@10']:.4f} | {steps} | "
                     f"{r['train_seconds']:.0f} |")
    return lines + [""]


def render_l3prune(record_file: Path) -> list[str]:
    """L3 Prune's per-layer loss table for all-MiniLM-L6-v2 (from ``ff-train prune --l3prune``'s record)."""
    lines = ["## L3 Prune on all-MiniLM-L6-v2", ""]
    if not record_file.exists():
        return lines + ["Not run yet.", ""]
    result = json.loads(record_file.read_text())["l3prune"]
    lines += [
        f"`ff-train prune --l3prune small --data <train split> --plot docs/l3prune-minilm.png`: the untrained "
        f"model's InfoNCE loss (in-batch negatives) at every layer's output, on {result['batches']} sampled batches "
        f"of {result['batch_size']} (query, relevant document) pairs of the train split. `small` is the "
        "lowest-loss layer in the first half, `large` in the second half. On this 6-layer model, already "
        "trained for embeddings, the loss falls steeply only at the last layer, so `large` keeps all 6 and "
        "`small` (3 layers) is barely better than the layers before it: unlike the LLMs L3 Prune was made for, "
        "MiniLM has no redundant late layers to drop for free.",
        "",
        "| layers kept | loss | L3 Prune |",
        "|---|---|---|",
    ]
    for layer, loss in enumerate(result["losses"], start=1):
        mark = {result["small"]: "small", result["large"]: "large"}.get(layer, "")
        lines.append(f"| {layer} | {loss:.4f} | {mark} |")
    return lines + ["", "![loss per layer](l3prune-minilm.png)", ""]


if __name__ == "__main__":
    sys.exit(main())
