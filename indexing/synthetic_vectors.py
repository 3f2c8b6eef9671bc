"""Vectors for generated documents with the structure of an encoder's, without running the encoder.

A document's vector is predicted from what the encoder gets as input: the mean of its input
token embeddings over the document's word pieces (the first ``max_seq_length - 2`` pieces and
``[CLS]``/``[SEP]``, as the encoder would see them). A linear map (ridge regression), fitted on
the real collection from that mean to the encoder's actual document vector, turns it into a
vector in the encoder's space, which is then normalised. Documents that share words get nearby
vectors, as with the encoder; queries encoded by the real encoder land in the same space.

Costs per document: a sum of token embeddings (``torch.nn.functional.embedding_bag``) and one
``dim x dim`` product. The fit encodes the real collection once (SciFact: 5,183 documents) and
is cross-validated: :attr:`VectorMap.metrics` holds the held-out cosine between predicted and
real vectors, and, with the real test queries, nDCG@10 of dense retrieval over the real
documents' predicted vectors against their real ones. ``noise`` adds Gaussian noise shaped like
the held-out residuals (``noise * L z`` with ``L L^T`` their covariance) before normalising.

Regression shrinks predictions towards their mean, and generated documents (mixtures of topic
and unigram words) are more alike than real ones, so the predicted vectors crowd together (mean
cosine of random pairs 0.35 on SciFact-like text against 0.13 for the real vectors).
:meth:`VectorMap.calibrate` fixes that with one affine step fitted on a sample of the generated
documents: each prediction's offset from their mean is stretched by the factor that brings the
mean pairwise cosine to the real vectors'. Neighbourhoods are kept; the spread becomes the real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranker.errors import InputError

if TYPE_CHECKING:
    from indexing.synthetic import Chunk, Lexicon, SourceStatistics

MAP_VERSION = 1
FOLDS = 5
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # times the mean diagonal of the centred X^T X
DEFAULT_NOISE = 0.0
_KEY_NOISE = 4


@dataclass
class TokenEmbedder:
    """The encoder's tokenizer and input token embeddings: words -> mean token embedding per document."""

    tokenizer: Any
    embeddings: Any            # torch (pieces, dim) float32
    special: np.ndarray        # (dim,) embeddings of [CLS] + [SEP]
    max_pieces: int            # word pieces the encoder reads per text, besides [CLS] and [SEP]
    word_starts: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # pieces of real words
    word_pieces: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    word_tokenizer: Any = None  # a private copy of the fast (Rust) tokenizer, no padding or truncation

    @classmethod
    def from_model(cls, model: Any, vocabulary: list[str]) -> TokenEmbedder:
        """From a loaded sentence-transformers model (a BERT-like first module) and the real vocabulary."""
        tokenizer = model.tokenizer
        try:
            embeddings = model[0].auto_model.get_input_embeddings().weight.detach().float().cpu()
        except (AttributeError, IndexError, TypeError):
            raise InputError("--vectors needs a transformer encoder with input token embeddings") from None
        ends = [i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None]
        special = embeddings[ends].sum(0).numpy() if ends else np.zeros(embeddings.shape[1], dtype=np.float32)
        embedder = cls(tokenizer, embeddings, special, int(model.max_seq_length) - len(ends))
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:   # ten times faster than the Python wrapper on thousands of words
            from tokenizers import Tokenizer

            embedder.word_tokenizer = Tokenizer.from_str(backend.to_str())
            embedder.word_tokenizer.no_padding()
            embedder.word_tokenizer.no_truncation()
        embedder.word_starts, embedder.word_pieces = embedder.pieces(vocabulary)
        return embedder

    @property
    def dim(self) -> int:
        """Token embedding dimension."""
        return int(self.embeddings.shape[1])

    def pieces(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Word-piece ids of ``words`` as (starts, ids): word ``i`` is ``ids[starts[i]:starts[i + 1]]``."""
        if not words:
            return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if self.word_tokenizer is not None:
            ids = [encoding.ids for encoding in self.word_tokenizer.encode_batch(words, add_special_tokens=False)]
        else:
            ids = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        starts = np.concatenate([[0], np.cumsum([len(p) for p in ids])]).astype(np.int64)
        return starts, np.fromiter((i for p in ids for i in p), dtype=np.int64, count=int(starts[-1]))

    def add_words(self, words: list[str], batch: int = 100_000) -> None:
        """Append the pieces of more words (generated rare words: ids from the real vocabulary size on)."""
        for first in range(0, len(words), batch):
            starts, pieces = self.pieces(words[first:first + batch])
            self.word_starts = np.concatenate([self.word_starts[:-1], self.word_starts[-1] + starts])
            self.word_pieces = np.concatenate([self.word_pieces, pieces])

    def features(self, token_ids: np.ndarray, starts: np.ndarray, lexicon: Lexicon) -> np.ndarray:
        """Mean input token embedding of each document (``token_ids`` split at ``starts``), float32 (n, dim)."""
        import torch

        from indexing.synthetic import pseudo_words

        known = self.word_starts.size - 1                      # words whose pieces are in the table
        word = token_ids.copy()
        new = word >= known
        word_starts, word_pieces = self.word_starts, self.word_pieces
        if new.any():
            numbers, inverse = np.unique(word[new] - len(lexicon), return_inverse=True)
            extra_starts, extra_pieces = self.pieces(pseudo_words(numbers, lexicon.skip))
            word[new] = known + inverse
            word_starts = np.concatenate([word_starts[:-1], word_starts[-1] + extra_starts])
            word_pieces = np.concatenate([word_pieces, extra_pieces])
        count = (word_starts[1:] - word_starts[:-1])[word]
        lengths = np.diff(starts)
        doc = np.repeat(np.arange(lengths.size), lengths)
        before = np.cumsum(count) - count                       # pieces before each word, counted per document
        before -= np.repeat(before[np.minimum(starts[:-1], max(word.size - 1, 0))] if word.size else
                            np.zeros(lengths.size, dtype=np.int64), lengths)
        count = np.clip(self.max_pieces - before, 0, count)    # what fits in the encoder's window
        keep = count > 0
        word, count, doc = word[keep], count[keep], doc[keep]
        total = int(count.sum())
        piece = word_pieces[np.repeat(word_starts[word] - (np.cumsum(count) - count), count) + np.arange(total)]
        per_doc = np.bincount(doc, weights=count, minlength=lengths.size)
        offsets = np.concatenate([[0], np.cumsum(per_doc)[:-1]]).astype(np.int64)
        sums = torch.nn.functional.embedding_bag(torch.from_numpy(piece), self.embeddings,
                                                 torch.from_numpy(offsets), mode="sum").numpy()
        return ((sums + self.special) / (per_doc + 2)[:, None]).astype(np.float32)


@dataclass
class VectorMap:
    """The fitted map (mean token embedding -> document vector) and how well it predicts held-out documents."""

    weights: np.ndarray        # (dim_in, dim) ridge solution
    bias: np.ndarray           # (dim,)
    noise_factor: np.ndarray   # (dim, dim) Cholesky factor of the held-out residual covariance
    key: dict[str, Any]        # what it was fitted on: source checksum, encoder fingerprint, version
    metrics: dict[str, Any]
    real_vectors: np.ndarray   # (D, dim) the encoder's vectors of the real documents (for comparisons)
    noise: float = DEFAULT_NOISE
    seed: int = 0
    embedder: TokenEmbedder | None = None
    center: np.ndarray | None = None   # mean prediction of the generated sample (set by calibrate)
    stretch: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Output dimension."""
        return int(self.weights.shape[1])

    def predict(self, features: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Unit-length float32 vectors for mean-token-embedding ``features`` (with noise when ``rng`` is given)."""
        vectors = features.astype(np.float64) @ self.weights + self.bias
        if self.center is not None:
            vectors = self.center + self.stretch * (vectors - self.center)
        if rng is not None and self.noise > 0:
            vectors += self.noise * rng.standard_normal(vectors.shape) @ self.noise_factor.T
        return _normalise(vectors).astype(np.float32)

    def calibrate(self, sample: Chunk, lexicon: Lexicon) -> None:
        """Fit the stretch on a sample of generated documents: their mean pairwise cosine becomes the real one."""
        if self.embedder is None:
            raise ValueError("the map has no token embedder; load it with fitted_map")
        self.center, self.stretch = None, 1.0
        predicted = self.embedder.features(sample.token_ids, sample.starts, lexicon).astype(np.float64) @ self.weights
        predicted += self.bias
        center = predicted.mean(0)
        target = self.metrics["mean_pairwise_cosine"]["real"]

        def pairwise(stretch: float) -> float:
            return _pairwise(_normalise(center + stretch * (predicted - center)), rounded=False)

        low, high = 0.25, 8.0
        if pairwise(low) <= target or pairwise(high) >= target or len(predicted) < 2:
            stretch = 1.0   # out of reach (a tiny sample): leave the predictions as they are
        else:
            for _ in range(30):
                mid = (low + high) / 2
                low, high = (mid, high) if pairwise(mid) > target else (low, mid)
            stretch = (low + high) / 2
        self.center, self.stretch = center, stretch
        self.calibration = {"sample_documents": len(predicted), "stretch": _round(stretch),
                            "mean_pairwise_cosine_before": _round(pairwise(1.0)),
                            "mean_pairwise_cosine_after": _round(pairwise(stretch)), "target": target}

    def document_vectors(self, chunk: Chunk, lexicon: Lexicon) -> np.ndarray:
        """Vectors of a generated chunk's documents (deterministic for the map's seed and the chunk)."""
        if self.embedder is None:
            raise ValueError("the map has no token embedder; load it with fitted_map")
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_KEY_NOISE, chunk.first)))
        return self.predict(self.embedder.features(chunk.token_ids, chunk.starts, lexicon), rng)

    def summary(self) -> dict[str, Any]:
        """For ``synthetic.json``."""
        return {"method": "normalise(c + stretch * (W @ mean input token embedding + b - c)); W, b: ridge fitted "
                          "on the source collection; c, stretch: fitted on a generated sample",
                "dim": self.dim, "noise": self.noise, "fitted_on": self.key, "realism": self.metrics,
                "calibration": self.calibration}

    def save(self, path: Path) -> None:
        """Write the map (not the embedder) as an ``.npz`` file."""
        with open(path, "wb") as handle:
            np.savez(handle, weights=self.weights, bias=self.bias, noise_factor=self.noise_factor,
                     real_vectors=self.real_vectors, key=np.asarray(json.dumps(self.key, sort_keys=True)),
                     metrics=np.asarray(json.dumps(self.metrics)))

    @classmethod
    def load(cls, path: Path) -> VectorMap:
        """Read a map written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["weights"], data["bias"], data["noise_factor"], json.loads(str(data["key"])),
                           json.loads(str(data["metrics"])), data["real_vectors"])
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{path}: not a vector map written by ff-index synthesize ({err})") from None


def fitted_map(stats: SourceStatistics, cache: str | Path | None = None, noise: float = DEFAULT_NOISE,
               seed: int = 0, progress: bool = True) -> VectorMap:
    """The map for ``stats``' collection and the default encoder: from ``cache`` when it matches, else fitted.

    A fitted map is written to ``cache`` (atomically) when one is given.
    """
    from ranker.atomic import atomic_file
    from ranker.encoders import encoder_fingerprint, load_encoder, resolve_encoder

    if noise < 0:
        raise InputError(f"--vector-noise must be at least 0, got {noise}")
    model_dir = resolve_encoder(None)
    key = {"version": MAP_VERSION, "source": stats.checksum, "encoder": encoder_fingerprint(model_dir)}
    model = load_encoder(model_dir)
    embedder = TokenEmbedder.from_model(model, stats.vocabulary)
    vector_map = None
    if cache is not None and Path(cache).is_file():
        vector_map = VectorMap.load(Path(cache))
        if vector_map.key != key:
            vector_map = None  # fitted on another collection or encoder: refit
    if vector_map is None:
        vector_map = fit_map(stats, model, embedder, key, progress=progress)
        if cache is not None:
            with atomic_file(cache) as tmp:
                vector_map.save(tmp)
    vector_map.embedder, vector_map.noise, vector_map.seed = embedder, noise, seed
    return vector_map


def fit_map(stats: SourceStatistics, model: Any, embedder: TokenEmbedder, key: dict[str, Any],
            progress: bool = True) -> VectorMap:
    """Encode the real documents and fit the ridge map (ridge strength chosen by cross-validated cosine)."""
    from indexing.corpus import read_corpus
    from indexing.encoding import encode_texts
    from indexing.synthetic import Lexicon

    wanted = set(stats.docnos)
    texts = {doc.docno: doc.contents for doc in read_corpus(stats.name) if doc.docno in wanted}
    real = encode_texts(model, [texts[d] for d in stats.docnos], progress=progress, desc="encode source")
    features = embedder.features(stats.stream.astype(np.int64), stats.doc_starts, Lexicon(stats.vocabulary))
    folds = np.random.default_rng(0).permutation(len(real)) % FOLDS
    best = max(RIDGE_GRID, key=lambda ridge: _cosine(_cross_validated(features, real, folds, ridge), real).mean())
    held_out = _cross_validated(features, real, folds, best)
    weights, bias = _ridge(features, real, best)
    residual = real - held_out
    covariance = np.cov(residual, rowvar=False) + 1e-9 * np.eye(real.shape[1])
    factor = np.linalg.cholesky(covariance)
    metrics = {"ridge": best, "folds": FOLDS, "documents": len(real),
               "held_out_cosine": _round(_cosine(_normalise(held_out), real).mean()),
               "mean_pairwise_cosine": {"real": _pairwise(real), "predicted": _pairwise(_normalise(held_out))}}
    metrics.update(_retrieval(stats, model, real, held_out, factor))
    return VectorMap(weights, bias, factor, key, metrics, real)


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised bias; ``ridge`` is relative to the mean diagonal of X^T X."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    penalty = ridge * float((xc * xc).sum()) / x.shape[1]
    # least squares on X stacked over sqrt(penalty) * I: (X^T X + penalty I) W = X^T Y, without
    # np.linalg.solve (its threaded LAPACK call crashes in a process that has started the JVM)
    stacked = np.vstack([xc, np.sqrt(penalty) * np.eye(x.shape[1])])
    target = np.vstack([y - y_mean, np.zeros((x.shape[1], y.shape[1]))])
    weights = np.linalg.lstsq(stacked, target, rcond=None)[0]
    return weights, y_mean - x_mean @ weights


def _cross_validated(x: np.ndarray, y: np.ndarray, folds: np.ndarray, ridge: float) -> np.ndarray:
    """Predictions for every row from a map fitted without its fold."""
    out = np.empty(y.shape, dtype=np.float64)
    for fold in range(FOLDS):
        test = folds == fold
        weights, bias = _ridge(x[~test], y[~test], ridge)
        out[test] = x[test] @ weights + bias
    return out


def _retrieval(stats: SourceStatistics, model: Any, real: np.ndarray, held_out: np.ndarray,
               factor: np.ndarray) -> dict[str, Any]:
    """nDCG@10 of exact dense retrieval with the source's test queries over real and predicted document vectors."""
    from indexing.encoding import encode_texts
    from ranker.evaluation import evaluate
    from ranker.topics import load_qrels, read_queries

    source = Path(stats.name)
    if not (source / "qrels" / "test.tsv").is_file():
        return {}
    queries = read_queries(source, "test")
    qrels = load_qrels(source, "test")
    vectors = encode_texts(model, list(queries["query"]), progress=False)
    noisy = held_out + np.random.default_rng(0).standard_normal(held_out.shape) @ factor.T
    result = {"test_queries": len(queries)}
    for name, docs in (("real", real), ("predicted", _normalise(held_out)), ("predicted_noise_1", _normalise(noisy))):
        result[f"ndcg@10_{name}"] = _round(evaluate(_dense_run(queries["qid"], vectors, docs, stats.docnos), qrels,
                                                    ["nDCG@10"])["nDCG@10"])
    return result


def _dense_run(qids: Any, queries: np.ndarray, docs: np.ndarray, docnos: list[str], k: int = 100) -> Any:
    import pandas as pd

    from ranker.ranking import Ranking

    scores = queries.astype(np.float32) @ docs.astype(np.float32).T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(queries)), k)
    names = np.asarray(docnos, dtype=object)
    return Ranking(pd.DataFrame({"qid": np.repeat(np.asarray(qids, dtype=object), k),
                                 "docno": names[top.ravel()], "score": scores[rows, top.ravel()]}))


def _pairwise(vectors: np.ndarray, pairs: int = 20000, rounded: bool = True) -> float:
    """Mean cosine of random pairs of distinct rows (fixed seed)."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(len(vectors), size=(2, pairs))
    keep = a != b
    value = float(_cosine(vectors[a[keep]], vectors[b[keep]]).mean())
    return _round(value) if rounded else value


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (_normalise(a) * _normalise(b)).sum(1)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")
