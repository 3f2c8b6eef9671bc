"""ff-index synthesize: generated BEIR collections with a real collection's statistics (indexing/synthetic.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from indexing.cli import main as ff_index
from indexing.corpus import corpus_file, file_checksum, read_corpus
from indexing.synthetic import (
    CHUNK_DOCS,
    Lexicon,
    distinct_ratio,
    document_lines,
    fit_heaps,
    generate_chunk,
    identifier,
    plan_generation,
    pseudo_word_number,
    pseudo_words,
    read_statistics,
    synthesize,
    words,
)
from ranker.errors import InputError
from ranker.topics import load_qrels, read_queries
from tests.conftest import shared_collection

FILES = ("corpus.jsonl.gz", "queries.jsonl", "qrels/test.tsv")


def _without_timings(path: Path) -> dict:
    record = json.loads((path / "synthetic.json").read_text())
    record.pop("seconds")
    return record


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import write_beir

    return write_beir(tmp_path_factory.mktemp("source") / "tiny")


@pytest.fixture(scope="module")
def generated(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 documents (two chunks) and 40 queries from the five-document collection."""
    out = tmp_path_factory.mktemp("generated") / "synth"
    synthesize(tiny_source, out, 1500, 40, seed=7, progress=False)
    return out


# --- pieces ----------------------------------------------------------------------------------------------------

def test_words_are_lowercased_word_tokens():
    assert words("BM25 ranks (documents), 2.5x!") == ["bm25", "ranks", "documents", "2", "5x"]


def test_pseudo_words_enumerate_syllables_and_invert():
    # 42 syllables (14 consonants x a/o/u); three syllables first (42**3 = 74,088 words), then four
    numbers = np.array([0, 1, 2, 3, 42, 74087, 74088])
    assert pseudo_words(numbers) == ["bababa", "bababo", "bababu", "babada", "baboba", "zuzuzu", "babababa"]
    assert [pseudo_word_number(w) for w in pseudo_words(numbers)] == numbers.tolist()
    assert pseudo_word_number("cells") is None and pseudo_word_number("banana") == 903


def test_pseudo_words_skip_real_words():
    assert pseudo_words(np.arange(4), skip=np.array([1, 2])) == ["bababa", "babada", "babado", "babadu"]
    lexicon = Lexicon(["the", "bababo", "cells"])
    assert lexicon.strings(np.array([2, 3, 4, 0])) == ["cells", "bababa", "bababu", "the"]


@pytest.mark.java
def test_pseudo_words_are_single_unchanged_lucene_terms():
    """Porter stemming and the stopword list leave every pseudo-word as it is."""
    from ranker.java import autoclass

    analyzer = autoclass("io.anserini.analysis.DefaultEnglishAnalyzer").newDefaultInstance()
    analyze = autoclass("io.anserini.analysis.AnalyzerUtils").analyze
    sample = pseudo_words(np.concatenate([np.arange(3000), np.random.default_rng(0).integers(0, 10**9, 3000)]))
    assert list(analyze(analyzer, " ".join(sample))) == sample


def test_heaps_fit_recovers_exponents():
    assert fit_heaps(np.arange(10_000)) == pytest.approx((1.0, 1.0))     # every word new: V = n
    n = np.arange(1, 1_000_001)
    stream = np.ceil(np.sqrt(n)).astype(np.int64)                         # V(n) = ceil(sqrt(n))
    k, beta = fit_heaps(stream)
    assert beta == pytest.approx(0.5, abs=0.005) and k == pytest.approx(1.0, rel=0.05)


def test_distinct_ratio_by_hand():
    # documents [1 1 2] and [3]: 2/3 and 1/1
    assert distinct_ratio(np.array([1, 1, 2, 3]), np.array([0, 3, 4])) == pytest.approx((2 / 3 + 1) / 2)


def test_identifiers_are_padded_to_sort():
    docno = identifier("d", 1000)
    assert [docno(0), docno(999)] == ["d000", "d999"] and identifier("q", 1)(0) == "q0"


def test_document_lines_are_json_dumps(tiny_source: Path):
    stats = read_statistics(tiny_source)
    plan = plan_generation(stats, 50, 0)
    chunk = generate_chunk(stats, plan, 0)
    tokens = Lexicon(stats.vocabulary).strings(chunk.token_ids)
    starts = chunk.starts
    docno = identifier("d", 50)
    expected = "".join(json.dumps({"_id": docno(i), "title": " ".join(tokens[starts[i]:starts[i] + t]),
                                   "text": " ".join(tokens[starts[i] + t:starts[i + 1]])}, ensure_ascii=False) + "\n"
                       for i, t in enumerate(chunk.title_lengths.tolist()))
    assert document_lines(chunk, Lexicon(stats.vocabulary), docno) == expected.encode("utf-8")


# --- statistics of the tiny source -----------------------------------------------------------------------------

def test_statistics_of_the_tiny_collection(tiny_source: Path):
    stats = read_statistics(tiny_source)
    assert stats.documents == 5 and stats.title_lengths.tolist() == [2, 1, 0, 1, 2]
    assert stats.text_lengths.tolist() == [9, 10, 10, 9, 8] and stats.tokens == 52
    assert stats.query_lengths.tolist() == [4, 3, 2]
    assert stats.vocabulary[:3] == ["dense", "and", "a"] and stats.counts[:3].tolist() == [4, 3, 2]
    # query words found in the judged document: q1/007 4 of 4, q1/5 1 of 4 ("dense"), q2 3 of 3, q3 2 of 2
    assert stats.query_fraction_pairs == 4 and stats.query_fraction == pytest.approx((1 + 1 / 4 + 1 + 1) / 4)


# --- the generated collection ----------------------------------------------------------------------------------

def test_counts_ids_and_judgements(generated: Path):
    docs = list(read_corpus(generated))
    assert [d.docno for d in docs] == [f"d{i:04d}" for i in range(1500)]
    queries = read_queries(generated, "test")
    assert queries["qid"].tolist() == [f"q{i:02d}" for i in range(40)]
    qrels = load_qrels(generated, "test")
    assert len(qrels) == 40 and set(qrels["label"]) == {1} and qrels["qid"].tolist() == queries["qid"].tolist()
    text = {d.docno: set(words(d.contents)) for d in docs}
    assert set(qrels["docno"]) <= set(text)
    for query, docno in zip(queries["query"], qrels["docno"]):
        assert set(words(query)) & text[docno], (query, docno)   # each query shares words with its document


def test_lengths_follow_the_source(generated: Path, tiny_source: Path):
    record = json.loads((generated / "synthetic.json").read_text())
    real, made = record["fitted"], record["generated"]
    docs = list(read_corpus(generated))
    mean_words = np.mean([len(words(d.contents)) for d in docs])
    assert mean_words == pytest.approx(made["mean_document_words"], rel=1e-5)
    assert mean_words == pytest.approx(real["mean_document_words"], rel=0.1)   # 10.4 words in the tiny source
    assert np.mean([len(words(d.title)) for d in docs]) == pytest.approx(real["mean_title_words"], rel=0.1)
    query_words = [len(words(q)) for q in read_queries(generated)["query"]]
    assert set(query_words) <= {2, 3, 4} and np.mean(query_words) == pytest.approx(3.0, rel=0.15)


def test_record_says_what_was_generated(generated: Path, tiny_source: Path):
    record = json.loads((generated / "synthetic.json").read_text())
    assert record["source"]["path"] == str(tiny_source) and record["seed"] == 7
    assert record["source"]["checksum"] == file_checksum(corpus_file(tiny_source))
    assert (record["documents"], record["queries"], record["chunk_documents"]) == (1500, 40, CHUNK_DOCS)
    assert record["relevance"].startswith("synthetic")
    assert record["corpus_bytes"] == (generated / "corpus.jsonl.gz").stat().st_size
    assert record["generated"]["words"] == sum(len(words(d.contents)) for d in read_corpus(generated))


def test_same_seed_same_bytes(generated: Path, tiny_source: Path, tmp_path: Path):
    again = tmp_path / "again"
    synthesize(tiny_source, again, 1500, 40, seed=7, progress=False)
    for name in FILES:
        assert (again / name).read_bytes() == (generated / name).read_bytes(), name
    assert _without_timings(again) == _without_timings(generated)
    other = tmp_path / "other"
    synthesize(tiny_source, other, 1500, 40, seed=8, progress=False)
    assert (other / "corpus.jsonl.gz").read_bytes() != (generated / "corpus.jsonl.gz").read_bytes()


def test_corpus_is_gzip_with_fixed_header(generated: Path):
    data = (generated / "corpus.jsonl.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0"   # mtime 0
    assert gzip.decompress(data).count(b"\n") == 1500


def test_existing_output_is_refused(generated: Path, tiny_source: Path, capsys: pytest.CaptureFixture):
    before = (generated / "corpus.jsonl.gz").read_bytes()
    code = ff_index(["synthesize", "--from", str(tiny_source), "--docs", "10", "--queries", "1",
                     "--out", str(generated), "--quiet"])
    assert code == 2
    assert capsys.readouterr().err == f"ff-index: error: {generated}: already exists; pass --force to replace it\n"
    assert (generated / "corpus.jsonl.gz").read_bytes() == before


def test_force_replaces_a_synthetic_collection_only(tiny_source: Path, tmp_path: Path):
    out = tmp_path / "out"
    synthesize(tiny_source, out, 10, 2, progress=False)
    assert ff_index(["synthesize", "--from", str(tiny_source), "--docs", "20", "--queries", "3",
                     "--out", str(out), "--force", "--quiet"]) == 0
    assert len(list(read_corpus(out))) == 20
    with pytest.raises(InputError, match=r"is a non-empty directory that is not a synthetic collection"):
        synthesize(tiny_source, tiny_source, 10, 1, force=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # no leftovers


@pytest.mark.parametrize(("options", "message"), [
    ({"documents": 0, "queries": 0}, "--docs must be at least 1, got 0"),
    ({"documents": 5, "queries": 6}, "--queries must be between 0 and --docs (5), got 6"),
    ({"documents": 5, "queries": 1, "seed": -1}, "--seed must be at least 0, got -1"),
    ({"documents": 5, "queries": 1, "vector_noise": 0.5}, "--cache and --vector-noise apply to --vectors only"),
    ({"documents": 5, "queries": 1, "vectors": True, "vector_noise": -1.0},
     "--vector-noise must be at least 0, got -1"),
    ({"documents": 5, "queries": 1, "vectors": True, "cache": "no/such/dir/map.npz"},
     "no/such/dir/map.npz: directory no/such/dir does not exist"),
])
def test_bad_options(tiny_source: Path, tmp_path: Path, options: dict, message: str):
    with pytest.raises(InputError) as err:
        synthesize(tiny_source, tmp_path / "out", progress=False, **options)
    assert str(err.value) == message
    assert not (tmp_path / "out").exists()


def test_source_must_be_a_beir_directory(tmp_path: Path):
    with pytest.raises(InputError) as err:
        synthesize(tmp_path / "missing", tmp_path / "out", 5, 1, progress=False)
    assert str(err.value) == (f"{tmp_path / 'missing'}: not a BEIR directory "
                              "(expected corpus.jsonl[.gz], queries.jsonl, qrels/)")


def test_cli_prints_a_summary(tiny_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "cli"
    assert ff_index(["synthesize", "--from", str(tiny_source), "--docs", "30", "--queries", "2",
                     "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "synthetic.json").read_text())
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (30 documents, {record['generated']['words']:,} words, ")
    assert ff_index(["synthesize", "--from", str(tiny_source), "--docs", "3", "--queries", "1",
                     "--out", str(tmp_path / "x"), "--cache", "m.npz"]) == 2
    assert capsys.readouterr().err == "ff-index: error: --cache and --vector-noise apply to --vectors only\n"


# --- SciFact -----------------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_scifact_statistics_and_vocabulary_growth(tmp_path: Path):
    source = shared_collection("scifact")
    out = tmp_path / "scifact-synth"
    record = synthesize(source, out, 20_000, 200, progress=False)
    real, made, plan = record["fitted"], record["generated"], record["plan"]
    assert real["documents"] == 5183 and real["vocabulary"] == 35954
    for key in ("mean_title_words", "mean_text_words", "distinct_words_per_word"):
        assert made[key] == pytest.approx(real[key], rel=0.1), key
    # Heaps' law, fitted on SciFact, predicts the vocabulary of 4.5M words; the draw lands within 3%
    assert made["vocabulary"] == pytest.approx(plan["target_vocabulary"], rel=0.03)
    assert made["vocabulary"] > real["vocabulary"]
    queries = read_queries(out)
    assert np.mean([len(words(q)) for q in queries["query"]]) == pytest.approx(real["mean_query_words"], rel=0.1)
    assert made["mean_query_words"] == pytest.approx(real["mean_query_words"], rel=0.1)
    # SciFact: 59% of a query's words are in its relevant document; so in the generated judgements
    in_document = real["query_words_in_relevant_document"]["share"]
    assert in_document == pytest.approx(0.5912, abs=1e-4)
    assert made["query_words_in_relevant_document"] == pytest.approx(in_document, abs=0.05)


# --- vectors -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_vectors(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 documents with vectors; the fitted map cached beside them."""
    root = tmp_path_factory.mktemp("vectors")
    synthesize(tiny_source, root / "synth", 300, 5, seed=3, vectors=True, cache=root / "map.npz", progress=False)
    return root / "synth"


def test_vectors_shape_order_and_length(with_vectors: Path):
    vectors = np.load(with_vectors / "vectors.npy")
    assert vectors.shape == (300, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ids = (with_vectors / "vector_ids.txt").read_text().splitlines()
    assert ids == [d.docno for d in read_corpus(with_vectors)]
    record = json.loads((with_vectors / "synthetic.json").read_text())["vectors"]
    assert record["dim"] == 384 and record["noise"] == 0.0
    realism = record["realism"]
    assert realism["documents"] == 5 and realism["test_queries"] == 3
    assert -1 <= realism["held_out_cosine"] <= 1


def test_features_are_the_mean_of_the_encoder_input_embeddings(tiny_source: Path):
    """Exactly what the tokenizer gives the encoder (truncated to its window), averaged."""
    from indexing.synthetic_vectors import TokenEmbedder
    from ranker.encoders import load_encoder, resolve_encoder

    stats = read_statistics(tiny_source)
    model = load_encoder(resolve_encoder(None))
    embedder = TokenEmbedder.from_model(model, stats.vocabulary)
    embedder.max_pieces = 6   # a short window, so that truncation (mid-word too) is exercised
    lexicon = Lexicon(stats.vocabulary)
    chunk = generate_chunk(stats, plan_generation(stats, 40, 0), 0)   # half the words are pseudo-words here
    features = embedder.features(chunk.token_ids, chunk.starts, lexicon)
    tokens, starts = lexicon.strings(chunk.token_ids), chunk.starts
    table = embedder.embeddings.numpy()
    for i in range(40):
        ids = model.tokenizer(" ".join(tokens[starts[i]:starts[i + 1]]), truncation=True, max_length=8)["input_ids"]
        assert np.allclose(features[i], table[ids].mean(0), atol=1e-6), i


def test_cached_map_is_reused_and_vectors_repeat(with_vectors: Path, tiny_source: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    from indexing import synthetic_vectors

    def no_fit(*args, **kwargs):
        raise AssertionError("the cached map should have been used")

    monkeypatch.setattr(synthetic_vectors, "fit_map", no_fit)
    synthesize(tiny_source, tmp_path / "again", 300, 5, seed=3, vectors=True,
               cache=with_vectors.parent / "map.npz", progress=False)
    for name in ("vectors.npy", "vector_ids.txt", *FILES):
        assert (tmp_path / "again" / name).read_bytes() == (with_vectors / name).read_bytes(), name


def test_noise_changes_vectors_deterministically(with_vectors: Path, tiny_source: Path, tmp_path: Path):
    cache = with_vectors.parent / "map.npz"
    for name in ("a", "b"):
        synthesize(tiny_source, tmp_path / name, 300, 5, seed=3, vectors=True, cache=cache, vector_noise=0.5,
                   progress=False)
    noisy = np.load(tmp_path / "a" / "vectors.npy")
    assert noisy.tobytes() == np.load(tmp_path / "b" / "vectors.npy").tobytes()
    clean = np.load(with_vectors / "vectors.npy")
    cosine = (noisy * clean).sum(1)
    assert np.allclose(np.linalg.norm(noisy, axis=1), 1.0, atol=1e-5) and cosine.max() < 1 - 1e-6


@pytest.mark.java
def test_add_vectors_takes_the_generated_vectors(with_vectors: Path, tmp_path: Path):
    from indexing.add_vectors import add_vectors
    from indexing.build import build_index

    index = tmp_path / "index"
    build_index(with_vectors, index, progress=False)   # BM25 only
    manifest = add_vectors(index, with_vectors / "vectors.npy", with_vectors / "vector_ids.txt", None,
                           similarity="cosine")
    assert (manifest["corpus"]["documents"], manifest["vectors"]["documents"], manifest["vectors"]["dim"]) == \
        (300, 300, 384)
