"""``ff-train dev-split``: hold out part of a BEIR split's queries as a dev split.

A model fine-tuned on the train queries scores those same queries too well (measured on
SciFact: dense nDCG@10 0.828 on train against 0.720 on test), so alpha tuned on them comes out
too small. The dev split gives alpha tuning and model selection queries the model never saw.

The output is a BEIR directory that links (symbolic links, no copies) to the source's
``corpus.jsonl``, ``queries.jsonl`` and other splits, with the chosen split's qrels divided in
two: ``qrels/<split>.tsv`` (the queries kept for training) and ``qrels/<dev>.tsv`` (held out).
Which queries are held out depends only on their IDs and the seed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from ranker.errors import InputError


def held_out(qids: list[str], fraction: float, seed: int = 0) -> set[str]:
    """The ``round(fraction * len(qids))`` queries with the smallest seeded hash of their ID."""
    if not 0 < fraction < 1:
        raise InputError(f"--fraction must lie strictly between 0 and 1, got {fraction}")
    unique = sorted(set(qids))
    count = round(fraction * len(unique))
    if count < 1 or count >= len(unique):
        raise InputError(f"--fraction {fraction} of {len(unique)} queries leaves an empty split")
    key = {q: hashlib.sha256(f"{seed}\t{q}".encode()).hexdigest() for q in unique}
    return set(sorted(unique, key=key.__getitem__)[:count])


def write_dev_split(data: str | Path, out: str | Path, split: str = "train", dev: str = "dev",
                    fraction: float = 0.15, seed: int = 0, force: bool = False) -> dict[str, int]:
    """Write the BEIR directory ``out`` (see the module docstring); returns query counts per split."""
    from ranker.topics import qrels_path
    from ranker.atomic import write_text_atomic
    from ranker.trec import read_qrels

    data, out = Path(data).resolve(), Path(out)
    if not data.is_dir():
        raise InputError(f"{data}: not a BEIR directory")
    source = qrels_path(data, split)
    if dev == split or (data / "qrels" / f"{dev}.tsv").exists():
        raise InputError(f"{data}: the dev split name {dev!r} is taken; choose another with --dev")
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    if out.resolve() == data:
        raise InputError(f"{out}: must not be the source directory")
    qrels = read_qrels(source)
    dev_qids = held_out(qrels["qid"].tolist(), fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl", "corpus.jsonl.gz", "queries.jsonl.gz"):
        if (data / name).exists():
            _link(data / name, out / name)
    for other in sorted((data / "qrels").glob("*.tsv")):
        if other.stem != split:
            _link(other, out / "qrels" / other.name)
    for name, part in ((split, qrels[~qrels["qid"].isin(dev_qids)]), (dev, qrels[qrels["qid"].isin(dev_qids)])):
        write_text_atomic(out / "qrels" / f"{name}.tsv", _qrels_tsv(part))
    kept = qrels.loc[~qrels["qid"].isin(dev_qids), "qid"].nunique()
    return {split: int(kept), dev: len(dev_qids)}


def _qrels_tsv(qrels: pd.DataFrame) -> str:
    lines = ["query-id\tcorpus-id\tscore\n"]
    lines += [f"{q}\t{d}\t{int(s)}\n" for q, d, s in zip(qrels["qid"], qrels["docno"], qrels["label"])]
    return "".join(lines)


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)
