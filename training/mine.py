"""``ff-train mine``: hard negatives from our own BM25 index.

For every judged-relevant (query, document) pair of a BEIR split, the negatives are the
highest-ranked BM25 documents of the query that are not judged relevant to it (any grade > 0
is skipped; documents judged 0 are kept, they are the hardest true negatives). The result is
a JSONL file of ``query, positive, negative`` rows (with their IDs) that ``ff-train train`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ranker.errors import InputError


def mine_negatives(index: str | Path, beir_dir: str | Path, split: str = "train", depth: int = 30,
                   negatives: int = 1, threads: int = 1, k1: float | None = None, b: float | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """``qid, query, pos_id, positive, neg_id, negative``: ``negatives`` rows per relevant pair.

    The i-th row of a pair takes the i-th best non-relevant document among BM25's top
    ``depth``; a query with fewer such documents gets fewer rows (possibly none).
    """
    from ranker.sparse import DEFAULT_B, DEFAULT_K1, BM25Searcher
    from training.data import read_beir_pairs

    if depth < 1:
        raise InputError(f"--depth must be at least 1, got {depth}")
    if negatives < 1:
        raise InputError(f"--negatives must be at least 1, got {negatives}")
    pairs = read_beir_pairs(beir_dir, split)
    relevant = pairs.groupby("qid")["docno"].agg(set).to_dict()
    searcher = BM25Searcher(index, k1=DEFAULT_K1 if k1 is None else k1, b=DEFAULT_B if b is None else b)
    queries = pairs.drop_duplicates("qid")[["qid", "query"]]
    run = searcher.search(queries, k=depth, threads=threads, progress=progress).df
    ranked = run.groupby("qid", sort=False)["docno"].agg(list).to_dict()
    chosen = {qid: [d for d in ranked.get(qid, []) if d not in relevant[qid]][:negatives] for qid in relevant}
    texts = _document_texts(searcher, {d for docs in chosen.values() for d in docs})
    rows = []
    for pair in pairs.itertuples(index=False):
        for neg in chosen[pair.qid]:
            rows.append((pair.qid, pair.query, pair.docno, pair.positive, neg, texts[neg]))
    return pd.DataFrame(rows, columns=["qid", "query", "pos_id", "positive", "neg_id", "negative"])


def write_jsonl(rows: pd.DataFrame, path: str | Path) -> Path:
    """Write one JSON object per row (UTF-8), to a temporary file renamed at the end."""
    from ranker.atomic import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in rows.to_dict(orient="records"))
    write_text_atomic(path, "".join(lines))
    return path


def _document_texts(searcher: object, docnos: set[str]) -> dict[str, str]:
    """``docno -> contents`` from the index's stored raw documents."""
    texts = {}
    for docno in sorted(docnos):
        stored = searcher.document(docno)  # type: ignore[attr-defined]
        if stored is None:
            raise InputError(f"document {docno!r} is in the BM25 results but not stored in the index")
        texts[docno] = stored["contents"]
    return texts
