"""Generated test collections with the statistics of a real one (``ff-index synthesize``).

No large real collection is at hand offline, so this writes one of any size in BEIR layout,
drawn from a real collection's statistics:

* **Lengths**: each document takes the (title, text) word counts of a random real document, so
  both length distributions (and their correlation) are the real ones; queries take real query lengths.
* **Words**: each document picks one or two real documents as topic seeds. A fraction
  ``topic_fraction`` of its words are drawn from the seeds' words (a uniform position in a seed's
  token sequence, i.e. its word distribution), the rest from the collection's unigram
  distribution (a uniform position in all real tokens: its Zipf curve). ``topic_fraction`` is
  fitted so that generated documents repeat words as often as real ones (mean distinct words
  per word). Terms therefore co-occur by topic, and BM25 has real discriminative structure.
* **Vocabulary growth**: sampling only real words would cap the vocabulary at the real one. Heaps'
  law ``V = K * N**beta``, fitted on the real collection, predicts the number of distinct words of
  the generated one; generated rare words (deterministic pseudo-words such as ``kamoru``,
  unchanged by the Porter stemmer and never a real word) with a ``1/rank`` Zipf tail take the
  probability mass that brings the expected vocabulary to the predicted size.
* **Queries and relevance** (synthetic: a query is relevant to the document it was drawn from, and
  no other judgement exists): each query is drawn from one generated document, a fraction of its
  words from that document's words, the rest from its topic seeds' words that the document lacks
  (related vocabulary, as a real query's words that its relevant document does not contain;
  unigram words when the seeds have none left); no word twice. Fitted on the real judgements:
  the fraction (the share of a real query's words found in its relevant document), and how
  specific the words are: a word is picked with weight ``count * idf**power``, ``power`` set so that
  the picked words' mean idf is that of real query words found (or not found) in the relevant
  document. Picking by tf * idf instead would make BM25 find the document far too easily.

Words are lower-cased ``\\w+`` tokens joined by spaces (what Lucene's analyzer and an uncased
encoder would see anyway). Output is deterministic for a seed; documents are generated and
written in chunks of :data:`CHUNK_DOCS`, so memory does not grow with the collection.
"""

from __future__ import annotations

import gzip
import json
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ranker.errors import InputError

CHUNK_DOCS = 1024          # documents per generated chunk; part of the output's definition (determinism)
TWO_SEEDS = 0.5            # probability that a document has two topic seeds rather than one
DEFAULT_QUERY_FRACTION = 0.5   # when the source has no judgements to fit it on
GZIP_LEVEL = 1              # zlib level: 4x faster to write than 6, files 15% larger
MARKER = "synthetic.json"
WORD = re.compile(r"\w+")
_KEY_DOCS, _KEY_TARGETS, _KEY_CALIBRATE = 1, 2, 3   # independent random streams per purpose

# Pseudo-words: consonant-vowel syllables, vowels a/o/u only, three syllables or more. No Porter
# step touches such a word (no suffix it removes ends in consonant + a/o/u, except "ou"), and none
# is an English stopword, so each stays one distinct Lucene term.
_CONSONANTS = np.frombuffer(b"bdfgklmnprstvz", dtype=np.uint8)
_VOWELS = np.frombuffer(b"aou", dtype=np.uint8)
_SYLLABLES = len(_CONSONANTS) * len(_VOWELS)
_MIN_SYLLABLES = 3


def words(text: str) -> list[str]:
    """The words of ``text`` as counted and generated here: lower-cased ``\\w+`` tokens."""
    return WORD.findall(text.lower())


@dataclass
class SourceStatistics:
    """What generation needs from the real collection (token ids index ``vocabulary``, most frequent first)."""

    name: str
    checksum: str              # sha256 of the source corpus file
    docnos: list[str]          # the real documents (those with words), in corpus order
    vocabulary: list[str]
    counts: np.ndarray         # (V,) occurrences of each word
    stream: np.ndarray         # (N,) int32: every document's words (title then text), in corpus order
    doc_starts: np.ndarray     # (D + 1,) int64: document d is stream[doc_starts[d]:doc_starts[d + 1]]
    title_lengths: np.ndarray  # (D,) words per title
    text_lengths: np.ndarray   # (D,) words per text
    query_lengths: np.ndarray  # (Q,) words per query
    idf: np.ndarray            # (V,) float32 log(1 + D / df)
    heaps_k: float
    heaps_beta: float
    query_fraction: float      # share of a real query's words found in its judged document
    query_found_idf: float     # mean idf of those words
    query_related_idf: float   # mean idf of the query's other words (those in the corpus)
    query_fraction_pairs: int  # judged (query, document) pairs these were fitted on; 0: defaults

    @property
    def documents(self) -> int:
        """Real documents (with at least one word)."""
        return len(self.docnos)

    @property
    def tokens(self) -> int:
        """Words in the real collection."""
        return int(self.stream.size)

    def summary(self) -> dict[str, Any]:
        """The fitted statistics, for ``synthetic.json``."""
        lengths = self.title_lengths + self.text_lengths
        return {"documents": self.documents, "words": self.tokens, "vocabulary": len(self.vocabulary),
                "hapax_words": int((self.counts == 1).sum()),
                "mean_title_words": _round(self.title_lengths.mean()),
                "mean_text_words": _round(self.text_lengths.mean()),
                "mean_document_words": _round(lengths.mean()),
                "distinct_words_per_word": _round(distinct_ratio(self.stream, self.doc_starts)),
                "queries": int(self.query_lengths.size), "mean_query_words": _round(self.query_lengths.mean()),
                "heaps": {"k": _round(self.heaps_k), "beta": _round(self.heaps_beta)},
                "query_words_in_relevant_document": {
                    "share": _round(self.query_fraction), "mean_idf": _round(self.query_found_idf),
                    "mean_idf_of_the_others": _round(self.query_related_idf), "pairs": self.query_fraction_pairs}}


@dataclass(frozen=True)
class GenerationPlan:
    """How many documents and queries to draw, and the parameters fitted for that size."""

    documents: int
    queries: int
    seed: int
    expected_words: int          # documents x mean real document length
    target_vocabulary: int       # Heaps' law at expected_words
    new_word_probability: float  # share of all words that are generated rare words
    new_words: int               # size of the generated rare-word tail
    topic_fraction: float        # share of a document's words drawn from its topic seeds
    query_doc_power: float       # query words from the document: weight count * idf**power
    query_related_power: float   # query words from the seeds the document lacks: likewise
    expected_vocabulary: int     # the vocabulary the plan expects (independent draws)


@dataclass
class Chunk:
    """Generated documents ``first .. first + n - 1``: word ids (real ids, then rare words from ``V``) and queries."""

    first: int
    title_lengths: np.ndarray
    text_lengths: np.ndarray
    token_ids: np.ndarray        # every document's title then text words, concatenated (int64)
    seeds: np.ndarray            # (n, 2) each document's topic seeds (real document numbers; equal: one seed)
    queries: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (document number, word ids)

    @property
    def starts(self) -> np.ndarray:
        """Offsets of each document's words in ``token_ids`` (n + 1)."""
        return np.concatenate([[0], np.cumsum(self.title_lengths + self.text_lengths)])


# --- statistics of the real collection -----------------------------------------------------------------------

def read_statistics(source: str | Path) -> SourceStatistics:
    """Read a BEIR collection (documents, queries, judgements) and fit what generation needs."""
    from indexing.corpus import corpus_file, file_checksum, read_corpus
    from ranker.topics import read_queries

    source = Path(source)
    if not source.is_dir():
        raise InputError(f"{source}: not a BEIR directory (expected corpus.jsonl[.gz], queries.jsonl, qrels/)")
    index: dict[str, int] = {}
    ids: list[int] = []
    title_lengths: list[int] = []
    text_lengths: list[int] = []
    docnos: list[str] = []
    for doc in read_corpus(source):
        title, text = words(doc.title), words(doc.text)
        if not title and not text:
            continue  # not indexed (Anserini skips empty documents), so not a document to imitate
        ids.extend(index.setdefault(w, len(index)) for w in title + text)
        title_lengths.append(len(title))
        text_lengths.append(len(text))
        docnos.append(doc.docno)
    if not docnos:
        raise InputError(f"{source}: every document is empty")
    raw = np.asarray(ids, dtype=np.int64)
    raw_counts = np.bincount(raw, minlength=len(index))
    by_word = sorted(index, key=index.__getitem__)
    order = sorted(range(len(by_word)), key=lambda i: (-raw_counts[i], by_word[i]))  # frequent first, ties by word
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    vocabulary = [by_word[i] for i in order]
    stream = rank[raw].astype(np.int32)
    counts = raw_counts[order]
    lengths = np.asarray(title_lengths, dtype=np.int64) + np.asarray(text_lengths, dtype=np.int64)
    doc_starts = np.concatenate([[0], np.cumsum(lengths)])
    documents = len(docnos)
    checksum = file_checksum(corpus_file(source))
    idf = np.log1p(documents / np.maximum(document_frequencies(stream, doc_starts, len(vocabulary)), 1))
    heaps_k, heaps_beta = fit_heaps(stream)
    queries = read_queries(source)
    query_words = [words(text) for text in queries["query"]]
    query_lengths = np.asarray([len(w) for w in query_words if w], dtype=np.int64)
    if query_lengths.size == 0:
        raise InputError(f"{source}/queries.jsonl: no query has a word")
    word_id = {w: i for i, w in enumerate(vocabulary)}
    judged = _judged_pairs(source, dict(zip(queries["qid"], query_words)), {d: i for i, d in enumerate(docnos)})
    pairs = [([word_id.get(w, -1) for w in q], doc) for q, doc in judged]
    idf = idf.astype(np.float32)
    if pairs:
        fraction, found_idf, related_idf = _query_statistics(pairs, stream, doc_starts, idf)
    else:
        fraction, found_idf, related_idf = DEFAULT_QUERY_FRACTION, float(idf[stream].mean()), float(idf[stream].mean())
    return SourceStatistics(str(source), checksum, docnos, vocabulary, counts, stream, doc_starts,
                            np.asarray(title_lengths, dtype=np.int64), np.asarray(text_lengths, dtype=np.int64),
                            query_lengths, idf, heaps_k, heaps_beta, fraction, found_idf, related_idf, len(pairs))


def document_frequencies(stream: np.ndarray, doc_starts: np.ndarray, vocabulary: int) -> np.ndarray:
    """Documents containing each word id (``stream`` split at ``doc_starts``)."""
    doc = np.repeat(np.arange(doc_starts.size - 1), np.diff(doc_starts))
    pairs = _sorted_unique(doc * np.int64(vocabulary + 1) + stream)
    return np.bincount(pairs % (vocabulary + 1), minlength=vocabulary)[:vocabulary]


def distinct_ratio(token_ids: np.ndarray, starts: np.ndarray) -> float:
    """Mean over documents of distinct words / words (documents split at ``starts``; empty ones skipped)."""
    lengths = np.diff(starts)
    doc = np.repeat(np.arange(lengths.size), lengths)
    base = np.int64(int(token_ids.max(initial=0)) + 1)
    distinct = np.bincount(_sorted_unique(doc * base + token_ids) // base, minlength=lengths.size)
    present = lengths > 0
    return float((distinct[present] / lengths[present]).mean())


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy's hash-based unique is far slower on large int64 keys)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if values.size else values


def fit_heaps(stream: np.ndarray) -> tuple[float, float]:
    """Fit Heaps' law ``V(n) = K * n**beta`` to distinct words after ``n`` words of ``stream`` (log-log least squares).

    Fitted on 50 log-spaced points of the last two decades (where the extrapolation starts);
    a stream shorter than 100 words uses all of it.
    """
    n = stream.size
    first = np.zeros(n, dtype=bool)
    first[np.unique(stream, return_index=True)[1]] = True
    seen = np.cumsum(first)
    low = max(1, n // 100)
    points = np.unique(np.geomspace(low, n, 50).astype(np.int64))
    if points.size < 2:
        return float(seen[-1]), 0.0
    beta, log_k = np.polyfit(np.log(points), np.log(seen[points - 1]), 1)
    return float(math.exp(log_k)), float(beta)


def _judged_pairs(source: Path, query_words: dict[str, list[str]], doc_number: dict[str, int]
                  ) -> list[tuple[list[str], int]]:
    """(query words, document number) of every positive judgement in ``qrels/*.tsv`` (each pair once)."""
    from ranker.trec import read_qrels

    pairs: dict[tuple[str, str], tuple[list[str], int]] = {}
    for path in sorted((source / "qrels").glob("*.tsv")):
        qrels = read_qrels(path)
        for qid, docno, label in zip(qrels["qid"], qrels["docno"], qrels["label"]):
            if label > 0 and query_words.get(qid) and docno in doc_number:
                pairs.setdefault((qid, docno), (query_words[qid], doc_number[docno]))
    return list(pairs.values())


def _query_statistics(pairs: list[tuple[list[int], int]], stream: np.ndarray, doc_starts: np.ndarray,
                      idf: np.ndarray) -> tuple[float, float, float]:
    """Over judged (query word ids, document) pairs (-1: not a corpus word): the mean share of query words
    in the document, the mean idf of those words, and the mean idf of the other query words in the corpus."""
    share = 0.0
    found: list[np.ndarray] = []
    others: list[np.ndarray] = []
    for query, doc in pairs:
        query = np.asarray(query, dtype=np.int64)
        inside = np.isin(query, stream[doc_starts[doc]:doc_starts[doc + 1]])
        share += float(inside.mean())
        found.append(query[inside])
        others.append(query[~inside & (query >= 0)])
    found_ids, other_ids = np.concatenate(found), np.concatenate(others)
    found_idf = float(idf[found_ids].mean()) if found_ids.size else float(idf[stream].mean())
    other_idf = float(idf[other_ids].mean()) if other_ids.size else found_idf
    return share / len(pairs), found_idf, other_idf


# --- the plan: vocabulary growth, topic fraction, query words --------------------------------------------------

def plan_generation(stats: SourceStatistics, documents: int, queries: int, seed: int = 0) -> GenerationPlan:
    """Fit the parameters of a generation: the rare-word tail (Heaps' law), the topic fraction, the query idf powers."""
    if documents < 1:
        raise InputError(f"--docs must be at least 1, got {documents}")
    if queries < 0 or queries > documents:
        raise InputError(f"--queries must be between 0 and --docs ({documents}), got {queries}")
    mean_length = float((stats.title_lengths + stats.text_lengths).mean())
    n_words = max(1, round(documents * mean_length))
    target = stats.heaps_k * n_words ** stats.heaps_beta
    unigram = stats.counts / stats.counts.sum()
    vocab = len(stats.vocabulary)
    real_only = _expected_distinct(unigram, n_words)
    p_new, n_new = 0.0, 0
    if target > real_only + 1:
        # new words take the share of words that are new at the end of the real collection (Heaps' slope)
        p_new = min(0.5, stats.heaps_beta * stats.heaps_k * stats.tokens ** (stats.heaps_beta - 1))
        n_new = _solve_new_words(unigram * (1 - p_new), p_new, vocab, n_words, target)
    expected = _expected_distinct(unigram * (1 - p_new), n_words) + _expected_new(p_new, vocab, n_new, n_words)
    plan = GenerationPlan(documents, queries, seed, n_words, round(target), p_new, n_new, 0.5, 0.0, 0.0,
                          round(expected))
    plan = GenerationPlan(**{**asdict(plan), "topic_fraction": _fit_topic_fraction(stats, plan)})
    doc_power, related_power = _fit_query_powers(stats, plan)
    return GenerationPlan(**{**asdict(plan), "query_doc_power": doc_power, "query_related_power": related_power})


def _expected_distinct(probabilities: np.ndarray, n_words: int) -> float:
    return float((-np.expm1(-n_words * probabilities)).sum())


def _expected_new(p_new: float, vocab: int, n_new: int, n_words: int) -> float:
    """Expected distinct rare words in ``n_words`` draws (ranks ``vocab+1 .. vocab+n_new``, P ~ 1/rank, mass p_new)."""
    if n_new == 0 or p_new == 0:
        return 0.0
    low, high = vocab + 0.5, vocab + n_new + 0.5
    scale = n_words * p_new / math.log(high / low)   # draws of the word at rank r: scale / r
    log_r = np.linspace(math.log(low), math.log(high), 4001)
    r = np.exp(log_r)
    return float(np.trapezoid(-np.expm1(-scale / r) * r, log_r))


def _solve_new_words(real: np.ndarray, p_new: float, vocab: int, n_words: int, target: float) -> int:
    """Smallest tail size whose expected vocabulary reaches ``target``.

    At most 16 times the missing words: where even that falls short (a tiny source whose Heaps
    fit is meaningless), the vocabulary stays below the target.
    """
    need = target - _expected_distinct(real, n_words)
    limit = max(1, math.ceil(16 * need))
    high = 1
    while _expected_new(p_new, vocab, high, n_words) < need and high < limit:
        high *= 2
    high = min(high, limit)
    low = high // 2
    while high - low > max(1, high // 10_000):
        mid = (low + high) // 2
        low, high = (mid, high) if _expected_new(p_new, vocab, mid, n_words) < need else (low, mid)
    return high


def _fit_topic_fraction(stats: SourceStatistics, plan: GenerationPlan, sample: int = 2048) -> float:
    """The topic fraction whose documents repeat words as much as real ones (mean distinct words per word).

    Bisection on a fixed-seed sample of ``sample`` documents; more topic words means more repeats.
    """
    target = distinct_ratio(stats.stream, stats.doc_starts)

    def ratio(fraction: float) -> float:
        chunk = calibration_chunk(stats, GenerationPlan(**{**asdict(plan), "topic_fraction": fraction}), sample)
        return distinct_ratio(chunk.token_ids, chunk.starts)

    low, high = 0.0, 1.0
    if ratio(low) <= target:
        return low
    if ratio(high) >= target:
        return high
    for _ in range(12):
        mid = (low + high) / 2
        low, high = (mid, high) if ratio(mid) > target else (low, mid)
    return round((low + high) / 2, 4)


def _fit_query_powers(stats: SourceStatistics, plan: GenerationPlan, sample: int = 256) -> tuple[float, float]:
    """The idf powers whose picked query words have the real mean idf (bisection on ``sample`` queries each)."""
    chunk = calibration_chunk(stats, plan)
    starts = chunk.starts
    n = min(sample, chunk.title_lengths.size)

    def mean_idf(part: int, power: float) -> float:
        trial = GenerationPlan(**{**asdict(plan), "query_doc_power": power, "query_related_power": power})
        rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(_KEY_CALIBRATE, part)))
        picked = np.concatenate([_query_parts(stats, trial, rng, chunk.token_ids[starts[i]:starts[i + 1]],
                                              chunk.seeds[i])[part] for i in range(n)])
        return float(_idf(stats, picked).mean()) if picked.size else 0.0

    powers = []
    for part, target in ((0, stats.query_found_idf), (1, stats.query_related_idf)):
        low, high = -4.0, 4.0
        if mean_idf(part, low) >= target:
            powers.append(low)
        elif mean_idf(part, high) <= target:
            powers.append(high)
        else:
            for _ in range(12):
                mid = (low + high) / 2
                low, high = (mid, high) if mean_idf(part, mid) < target else (low, mid)
            powers.append(round((low + high) / 2, 3))
    return powers[0], powers[1]


# --- drawing documents and queries -----------------------------------------------------------------------------

def calibration_chunk(stats: SourceStatistics, plan: GenerationPlan, size: int = 2048) -> Chunk:
    """A fixed-seed sample of ``size`` documents drawn as ``plan`` draws them (not part of the output)."""
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(_KEY_CALIBRATE,)))
    return _draw_documents(stats, plan, rng, 0, min(size, plan.documents))


def query_targets(plan: GenerationPlan) -> np.ndarray:
    """The generated documents the queries are drawn from, ascending (query ``j`` comes from ``targets[j]``)."""
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(_KEY_TARGETS,)))
    return np.sort(rng.choice(plan.documents, size=plan.queries, replace=False))


def generate_chunk(stats: SourceStatistics, plan: GenerationPlan, number: int,
                   targets: np.ndarray | None = None) -> Chunk:
    """Chunk ``number``: documents ``number * CHUNK_DOCS ..`` and the queries of ``targets`` among them."""
    first = number * CHUNK_DOCS
    n = min(CHUNK_DOCS, plan.documents - first)
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(_KEY_DOCS, number)))
    chunk = _draw_documents(stats, plan, rng, first, n)
    if targets is not None:
        mine = targets[(targets >= first) & (targets < first + n)]
        starts = chunk.starts
        chunk.queries = [(int(d), _draw_query(stats, plan, rng,
                                              chunk.token_ids[starts[d - first]:starts[d - first + 1]],
                                              chunk.seeds[d - first])) for d in mine]
    return chunk


def _draw_documents(stats: SourceStatistics, plan: GenerationPlan, rng: np.random.Generator, first: int,
                    n: int) -> Chunk:
    real_docs = stats.documents
    like = rng.integers(real_docs, size=n)               # lengths of a random real document
    title_lengths, text_lengths = stats.title_lengths[like], stats.text_lengths[like]
    lengths = title_lengths + text_lengths
    seed_a = rng.integers(real_docs, size=n)
    seed_b = np.where(rng.random(n) < TWO_SEEDS, rng.integers(real_docs, size=n), seed_a)
    total = int(lengths.sum())
    doc = np.repeat(np.arange(n), lengths)
    from_topic = rng.random(total) < plan.topic_fraction
    seed = np.where(rng.random(total) < 0.5, seed_a[doc], seed_b[doc])
    seed_start = stats.doc_starts[seed]
    seed_length = stats.doc_starts[seed + 1] - seed_start
    topic_pos = seed_start + (rng.random(total) * seed_length).astype(np.int64)
    background_pos = rng.integers(stats.tokens, size=total)
    token_ids = stats.stream[np.where(from_topic, topic_pos, background_pos)].astype(np.int64)
    if plan.new_words:
        p_background_new = plan.new_word_probability / max(1e-12, 1 - plan.topic_fraction)
        new = ~from_topic & (rng.random(total) < p_background_new)
        vocab = len(stats.vocabulary)
        low, high = vocab + 0.5, vocab + plan.new_words + 0.5
        rank = np.floor(low * (high / low) ** rng.random(int(new.sum())) + 0.5).astype(np.int64)
        token_ids[new] = np.minimum(rank, vocab + plan.new_words) - 1   # ids vocab .. vocab + new_words - 1
    return Chunk(first, title_lengths, text_lengths, token_ids, np.stack([seed_a, seed_b], axis=1))


def _draw_query(stats: SourceStatistics, plan: GenerationPlan, rng: np.random.Generator, doc_ids: np.ndarray,
                seeds: np.ndarray) -> np.ndarray:
    """A query for the document with words ``doc_ids`` and topic ``seeds``: see :func:`_query_parts`, shuffled."""
    return rng.permutation(np.concatenate(_query_parts(stats, plan, rng, doc_ids, seeds)))


def _query_parts(stats: SourceStatistics, plan: GenerationPlan, rng: np.random.Generator, doc_ids: np.ndarray,
                 seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A query's words: from the document, from the seeds' words the document lacks, from the unigram distribution.

    ``query_fraction`` of a real query length from the document; no word twice; words picked
    with weight ``count * idf**power`` (count in the document, or in the seeds).
    """
    length = int(stats.query_lengths[rng.integers(stats.query_lengths.size)])
    distinct, tf = np.unique(doc_ids, return_counts=True)
    from_doc = min(distinct.size, max(1, int(rng.binomial(length, stats.query_fraction))))
    chosen = _pick(rng, distinct, tf * _idf(stats, distinct) ** plan.query_doc_power, from_doc)
    topic = np.concatenate([stats.stream[stats.doc_starts[s]:stats.doc_starts[s + 1]] for s in np.unique(seeds)])
    related, count = np.unique(topic[~np.isin(topic, distinct)], return_counts=True)
    related = related.astype(np.int64)
    picked = _pick(rng, related, count * _idf(stats, related) ** plan.query_related_power,
                   min(related.size, length - from_doc))
    background = stats.stream[rng.integers(stats.tokens, size=length - from_doc - picked.size)].astype(np.int64)
    return chosen, picked, background


def _pick(rng: np.random.Generator, items: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """``size`` distinct items, drawn with probability proportional to ``weights``."""
    if size == 0:
        return items[:0]
    return rng.choice(items, size=size, replace=False, p=weights / weights.sum())


def _idf(stats: SourceStatistics, ids: np.ndarray) -> np.ndarray:
    """Source idf of word ids; a generated rare word counts as in one document."""
    vocab = len(stats.vocabulary)
    rare = math.log1p(stats.documents)
    return np.where(ids < vocab, stats.idf[np.minimum(ids, vocab - 1)], rare).astype(np.float64)


# --- turning ids into text -------------------------------------------------------------------------------------

def pseudo_words(numbers: np.ndarray, skip: np.ndarray | None = None) -> list[str]:
    """The pseudo-words with these numbers (0, 1, ...): ``bababa``, ``bababo``, ... (three syllables, then four, ...).

    ``skip``: sorted enumeration numbers to leave out (see :func:`pseudo_word_number`), so that
    word ``k`` is the ``k``-th pseudo-word whose number is not in ``skip``.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    index = numbers.copy()
    if skip is not None and skip.size:
        while True:  # the fixed point index = k + (skipped numbers <= index)
            moved = numbers + np.searchsorted(skip, index, side="right")
            if np.array_equal(moved, index):
                break
            index = moved
    syllables = np.full(index.shape, _MIN_SYLLABLES, dtype=np.int64)
    offset = index.copy()
    while (longer := offset >= _SYLLABLES ** syllables).any():
        offset[longer] -= _SYLLABLES ** syllables[longer]
        syllables[longer] += 1
    width = int(syllables.max(initial=_MIN_SYLLABLES))
    letters = np.zeros((index.size, 2 * width), dtype=np.uint8)
    for position in range(width):
        rows = np.nonzero(position < syllables)[0]
        digit = (offset[rows] // _SYLLABLES ** (syllables[rows] - 1 - position)) % _SYLLABLES
        letters[rows, 2 * position] = _CONSONANTS[digit // len(_VOWELS)]
        letters[rows, 2 * position + 1] = _VOWELS[digit % len(_VOWELS)]
    return [bytes(row).rstrip(b"\0").decode("ascii") for row in letters]


def pseudo_word_number(word: str) -> int | None:
    """The enumeration number of ``word`` if it has the pseudo-word pattern, else ``None``."""
    if len(word) % 2 or len(word) < 2 * _MIN_SYLLABLES:
        return None
    consonants, vowels = _CONSONANTS.tobytes().decode(), _VOWELS.tobytes().decode()
    value = 0
    for c, v in zip(word[::2], word[1::2]):
        if c not in consonants or v not in vowels:
            return None
        value = value * _SYLLABLES + consonants.index(c) * len(vowels) + vowels.index(v)
    before = sum(_SYLLABLES ** n for n in range(_MIN_SYLLABLES, len(word) // 2))
    return before + value


class Lexicon:
    """Word ids to words: real words first, then pseudo-words (skipping any that are real words).

    Holds every real word's UTF-8 bytes followed by a space in one array, so that a chunk's
    JSON lines are assembled with one vectorised gather instead of a join per document.
    """

    def __init__(self, vocabulary: list[str]) -> None:
        self.real = np.asarray(vocabulary, dtype=object)
        numbers = (pseudo_word_number(w) for w in vocabulary)
        self.skip = np.asarray(sorted(n for n in numbers if n is not None), dtype=np.int64)
        self.table, self.offsets, self.lengths = _byte_table([w.encode("utf-8") for w in vocabulary])

    def __len__(self) -> int:
        return int(self.real.size)

    def strings(self, token_ids: np.ndarray) -> list[str]:
        """The word of each id."""
        out = np.empty(token_ids.size, dtype=object)
        real = token_ids < self.real.size
        out[real] = self.real[token_ids[real]]
        if not real.all():
            numbers, inverse = np.unique(token_ids[~real] - self.real.size, return_inverse=True)
            out[~real] = np.asarray(pseudo_words(numbers, self.skip), dtype=object)[inverse]
        return out.tolist()


def _byte_table(items: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``items`` concatenated, each followed by a space, with each item's offset and length (without the space)."""
    lengths = np.fromiter((len(b) for b in items), dtype=np.int64, count=len(items))
    offsets = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    return np.frombuffer(b"".join(b + b" " for b in items), dtype=np.uint8), offsets, lengths


def identifier(prefix: str, count: int) -> Callable[[int], str]:
    """IDs ``<prefix>0..`` zero-padded to the width of ``count - 1`` (so they sort in generation order)."""
    width = len(str(max(count - 1, 0)))
    return lambda number: f"{prefix}{number:0{width}d}"


def document_lines(chunk: Chunk, lexicon: Lexicon, docno: Callable[[int], str]) -> bytes:
    """The chunk's documents as BEIR ``corpus.jsonl`` lines (``_id``, ``title``, ``text``), UTF-8.

    Exactly what ``json.dumps({"_id": .., "title": .., "text": ..}, ensure_ascii=False)`` writes:
    ``\\w`` words and the IDs hold no character JSON escapes. Built as one gather over a table of
    byte strings: per document its opening (``{"_id": "d..", "title": "``), its title words, the
    middle (``", "text": "``), its text words and the end (``"}`` and a newline); a word followed
    by another word is copied with its trailing space.
    """
    n = chunk.title_lengths.size
    ids = chunk.token_ids
    vocab = len(lexicon)
    new = ids >= vocab
    numbers, inverse = np.unique(ids[new] - vocab, return_inverse=True)
    extra, extra_offsets, extra_lengths = _byte_table(
        [w.encode("ascii") for w in pseudo_words(numbers, lexicon.skip)] +
        [f'{{"_id": "{docno(chunk.first + i)}", "title": "'.encode() for i in range(n)] +
        [b'", "text": "', b'"}\n'])
    base = lexicon.table.size
    table = np.concatenate([lexicon.table, extra])
    k = numbers.size
    src = np.empty(ids.size + 3 * n, dtype=np.int64)
    length = np.empty_like(src)
    starts = chunk.starts
    doc = np.repeat(np.arange(n), chunk.title_lengths + chunk.text_lengths)
    in_text = (np.arange(ids.size) - starts[doc]) >= chunk.title_lengths[doc]
    position = np.arange(ids.size) + 3 * doc + 1 + in_text          # item position of each word
    word_src = np.where(new, 0, lexicon.offsets[np.minimum(ids, vocab - 1)])
    word_len = np.where(new, 0, lexicon.lengths[np.minimum(ids, vocab - 1)])
    word_src[new] = base + extra_offsets[inverse]
    word_len[new] = extra_lengths[inverse]
    src[position], length[position] = word_src, word_len
    opening = starts[:-1] + 3 * np.arange(n)
    middle = opening + 1 + chunk.title_lengths
    end = starts[1:] + 3 * np.arange(n) + 2
    src[opening], length[opening] = base + extra_offsets[k:k + n], extra_lengths[k:k + n]
    src[middle], length[middle] = base + extra_offsets[k + n], extra_lengths[k + n]
    src[end], length[end] = base + extra_offsets[k + n + 1], extra_lengths[k + n + 1]
    is_word = np.zeros(src.size, dtype=bool)
    is_word[position] = True
    length[:-1] += is_word[:-1] & is_word[1:]                       # copy the trailing space too
    out_starts = np.cumsum(length) - length
    gather = np.repeat(src - out_starts, length) + np.arange(int(length.sum()))
    return table[gather].tobytes()


class GzipWriter:
    """Gzip-compress text in a background thread (zlib releases the GIL), deterministically (mtime 0)."""

    def __init__(self, path: Path, level: int = GZIP_LEVEL) -> None:
        self._file = open(path, "wb")
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, compresslevel=level, mtime=0)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._gzip.write(data)
                except BaseException as err:  # re-raised in the caller's thread
                    self._error = err

    def write(self, data: bytes) -> None:
        """Queue ``data`` for compression."""
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self) -> None:
        """Finish the stream and close the file."""
        self._queue.put(None)
        self._thread.join()
        self._gzip.close()
        self._file.close()
        if self._error is not None:
            raise self._error


# --- the whole collection --------------------------------------------------------------------------------------

def synthesize(source: str | Path, out: str | Path, documents: int, queries: int, seed: int = 0,
               vectors: bool = False, cache: str | Path | None = None, vector_noise: float | None = None,
               force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write a generated BEIR collection at ``out`` (atomically); returns its ``synthetic.json`` record.

    ``out`` gets ``corpus.jsonl.gz``, ``queries.jsonl``, ``qrels/test.tsv`` and ``synthetic.json``;
    with ``vectors``, also ``vectors.npy`` (float32, corpus order), ``vector_ids.txt`` (the
    layout ``ff-index add-vectors`` reads) and ``vector_map.npz`` (see
    :mod:`indexing.synthetic_vectors`; ``cache`` keeps the fitted map for the next run). Every
    file but the timings in ``synthetic.json`` is the same for the same arguments (the vectors:
    on the same machine, as BLAS rounding may differ elsewhere).
    """
    from ranker.atomic import atomic_directory, check_parent, check_target

    out = Path(out)
    if documents < 1:
        raise InputError(f"--docs must be at least 1, got {documents}")
    if queries < 0 or queries > documents:
        raise InputError(f"--queries must be between 0 and --docs ({documents}), got {queries}")
    if seed < 0:
        raise InputError(f"--seed must be at least 0, got {seed}")
    if not vectors and (cache is not None or vector_noise is not None):
        raise InputError("--cache and --vector-noise apply to --vectors only")
    if vector_noise is not None and vector_noise < 0:
        raise InputError(f"--vector-noise must be at least 0, got {vector_noise:g}")
    if cache is not None:
        check_parent(cache)  # before minutes of fitting, not after
    check_target(out, force, MARKER, "a synthetic collection")
    start = time.perf_counter()
    stats = read_statistics(source)
    plan = plan_generation(stats, documents, queries, seed)
    lexicon = Lexicon(stats.vocabulary)
    vector_map = None
    if vectors:
        from indexing.synthetic_vectors import DEFAULT_NOISE, fitted_map

        noise = DEFAULT_NOISE if vector_noise is None else vector_noise
        vector_map = fitted_map(stats, cache, noise=noise, seed=seed, progress=progress)
        vector_map.embedder.add_words(pseudo_words(np.arange(plan.new_words), lexicon.skip))
        vector_map.calibrate(calibration_chunk(stats, plan), lexicon)
    fitted = time.perf_counter()
    with atomic_directory(out, force, MARKER, "a synthetic collection") as tmp:
        totals = _write_collection(tmp, stats, plan, lexicon, vector_map, progress)
        generated = time.perf_counter()
        record = _record(stats, plan, totals, fitted - start, generated - fitted, vector_map)
        record["corpus_bytes"] = (tmp / "corpus.jsonl.gz").stat().st_size
        if vector_map is not None:
            vector_map.save(tmp / "vector_map.npz")
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


@dataclass
class _Totals:
    """What was generated, summed over chunks."""

    words: int = 0
    title_words: int = 0
    text_words: int = 0
    distinct_ratio_sum: float = 0.0
    vocabulary: int = 0
    query_words: int = 0
    query_words_in_document: int = 0


def _write_collection(directory: Path, stats: SourceStatistics, plan: GenerationPlan, lexicon: Lexicon,
                      vector_map: Any, progress: bool) -> _Totals:
    """Generate chunk by chunk into ``directory``: the corpus (compressed in a thread), vectors, then the queries."""
    from tqdm import tqdm

    targets = query_targets(plan)
    docno, qid = identifier("d", plan.documents), identifier("q", plan.queries)
    seen = np.zeros(len(lexicon) + plan.new_words, dtype=bool)
    totals = _Totals()
    queries: list[tuple[str, str, str]] = []
    matrix = None
    with ExitStack() as stack:
        writer = GzipWriter(directory / "corpus.jsonl.gz")
        stack.callback(writer.close)
        if vector_map is not None:
            matrix = np.lib.format.open_memmap(directory / "vectors.npy", mode="w+", dtype=np.float32,
                                               shape=(plan.documents, vector_map.dim))
            ids_file = stack.enter_context(open(directory / "vector_ids.txt", "w", encoding="utf-8"))
        for number in tqdm(range(-(-plan.documents // CHUNK_DOCS)), unit="chunk", desc="synthesize",
                           disable=not progress, dynamic_ncols=True):
            chunk = generate_chunk(stats, plan, number, targets)
            writer.write(document_lines(chunk, lexicon, docno))
            n = chunk.title_lengths.size
            seen[chunk.token_ids] = True
            totals.words += chunk.token_ids.size
            totals.title_words += int(chunk.title_lengths.sum())
            totals.text_words += int(chunk.text_lengths.sum())
            totals.distinct_ratio_sum += distinct_ratio(chunk.token_ids, chunk.starts) * n
            starts = chunk.starts
            for doc, ids in chunk.queries:
                queries.append((qid(len(queries)), " ".join(lexicon.strings(ids)), docno(doc)))
                in_doc = chunk.token_ids[starts[doc - chunk.first]:starts[doc - chunk.first + 1]]
                totals.query_words += ids.size
                totals.query_words_in_document += int(np.isin(ids, in_doc).sum())
            if matrix is not None:
                matrix[chunk.first:chunk.first + n] = vector_map.document_vectors(chunk, lexicon)
                ids_file.write("".join(docno(chunk.first + i) + "\n" for i in range(n)))
    if matrix is not None:
        matrix.flush()
        del matrix
    _write_queries(directory, queries)
    totals.vocabulary = int(seen.sum())
    return totals


def _write_queries(directory: Path, records: list[tuple[str, str, str]]) -> None:
    (directory / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": text}, ensure_ascii=False) + "\n" for q, text, _ in records),
        encoding="utf-8")
    (directory / "qrels").mkdir()
    (directory / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, _, d in records), encoding="utf-8")


def _record(stats: SourceStatistics, plan: GenerationPlan, totals: _Totals, fit_seconds: float,
            generate_seconds: float, vector_map: Any) -> dict[str, Any]:
    docs = plan.documents
    record: dict[str, Any] = {
        "kind": "ff-synthetic-collection",
        "relevance": "synthetic: each query is judged relevant (1) to the one document it was drawn from",
        "source": {"path": stats.name, "checksum": stats.checksum}, "seed": plan.seed,
        "documents": docs, "queries": plan.queries, "chunk_documents": CHUNK_DOCS,
        "fitted": stats.summary(),
        "plan": {key: (_round(value) if isinstance(value, float) else value)
                 for key, value in asdict(plan).items() if key not in ("documents", "queries", "seed")},
        "generated": {"words": totals.words, "vocabulary": totals.vocabulary,
                      "mean_title_words": _round(totals.title_words / docs),
                      "mean_text_words": _round(totals.text_words / docs),
                      "mean_document_words": _round(totals.words / docs),
                      "distinct_words_per_word": _round(totals.distinct_ratio_sum / docs),
                      "mean_query_words": _round(totals.query_words / max(plan.queries, 1)),
                      "query_words_in_relevant_document": _round(totals.query_words_in_document /
                                                                 max(totals.query_words, 1))},
        "seconds": {"fit": _round(fit_seconds), "generate": _round(generate_seconds),
                    "documents_per_second": round(docs / max(generate_seconds, 1e-9))},
    }
    if vector_map is not None:
        record["vectors"] = vector_map.summary()
    return record


def _round(value: float) -> float:
    return float(f"{float(value):.6g}")
