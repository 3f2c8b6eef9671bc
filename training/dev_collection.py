"""Early stopping on another collection: how well the model being trained ranks a collection it never trains on.

Training a query encoder on one collection's queries specialises it: in-domain quality keeps rising
while quality elsewhere falls (measured: docs/training.md). With a dev collection (``--dev DATA=INDEX``)
training measures, before the first step and every ``--eval-steps``, the Fast-Forward nDCG@10 of the
model on that collection's queries (BM25's top ``k`` from INDEX, scored with INDEX's stored vectors at
``alpha``), and keeps the weights where it was highest. BM25 runs once; an evaluation costs one
encoding of the dev queries. INDEX's documents must have been encoded by the encoder the training is
for (the training index's), so the scores mean what they will mean at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from ranker.forward_index import ForwardIndex
    from ranker.ranking import Ranking

MEASURE = "nDCG@10"


@dataclass
class DevCollection:
    """A dev collection ready to score a model: its queries, their BM25 candidates and judgements."""

    name: str
    split: str
    qids: list[str]
    texts: list[str]
    sparse: Ranking
    qrels: pd.DataFrame
    forward: ForwardIndex
    alpha: float
    normalization: str

    def score(self, model: Any) -> float:
        """Fast-Forward nDCG@10 of ``model`` (a SentenceTransformer) encoding this collection's queries."""
        from indexing.encoding import encode_texts
        from ranker.evaluation import evaluate
        from ranker.fusion import interpolate

        normalize = self.forward.manifest["similarity"] == "cosine"
        vectors = encode_texts(model, self.texts, normalize=normalize, progress=False)
        dense = self.forward.score(self.sparse, self.qids, vectors)
        fused = interpolate(self.sparse, dense, self.alpha, normalization=self.normalization)
        return evaluate(fused, self.qrels, [MEASURE])[MEASURE]


def open_dev_collection(spec: str, fingerprint: str, split: str = "test", alpha: float = 0.35,
                        normalization: str = "minmax", k: int = 1000) -> DevCollection:
    """``spec`` is ``DATA=INDEX`` (a BEIR directory and an index built from it); ``fingerprint`` is the
    encoder INDEX's vectors must come from. Retrieves BM25's top ``k`` for ``split``'s queries once."""
    from ranker.forward_index import VECTORS_DIR, ForwardIndex
    from ranker.sparse import BM25Searcher
    from ranker.topics import load_qrels, read_queries
    from training.evaluate import parse_data_index

    data_dir, index_dir = parse_data_index(spec, "--dev")
    if not (index_dir / VECTORS_DIR / "manifest.json").is_file():
        raise InputError(f"--dev {spec}: {index_dir} has no forward index (build it with vectors)")
    forward = ForwardIndex.open(index_dir / VECTORS_DIR)
    encoder = forward.manifest["encoder"]
    if encoder["fingerprint"] != fingerprint:
        raise InputError(f"--dev {spec}: its vectors come from {encoder['name']}, not from the training index's "
                         "encoder; build it with that encoder (ff-index build --encoder)")
    queries = read_queries(data_dir, split=split)
    qrels = load_qrels(data_dir, split=split)
    sparse = BM25Searcher(index_dir).search(queries, k=k)
    return DevCollection(name=data_dir.name, split=split, qids=queries["qid"].astype(str).tolist(),
                         texts=queries["query"].astype(str).tolist(), sparse=sparse, qrels=qrels, forward=forward,
                         alpha=alpha, normalization=normalization)
