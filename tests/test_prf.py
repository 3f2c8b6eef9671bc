"""Pseudo-relevance feedback (RM3, Rocchio) for the BM25 first stage: the settings and their checks, the expanded
query worked out by hand, and rankings equal to pyserini's ``LuceneSearcher.set_rm3`` / ``set_rocchio`` on a small
corpus written here, through ``BM25Searcher``, ``FastForward.rank`` and ``ff-rank run``."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from ranker.cli import main
from ranker.errors import InputError
from ranker.prf import DEFAULTS, RM3_FEEDBACK_POOL, PrfSettings, as_prf, check_prf
from tests.conftest import write_beir

# Twenty documents, so that a term in one or two of them is not dropped by RM3's filter (it skips terms that occur
# in more than 10% of the documents). Only "f1" holds "forward" or "index"; "d1" shares three of f1's other terms.
FILLER = ["apple orchard harvest", "river canoe paddle", "violin concerto orchestra", "glacier mountain climb",
          "volcano lava eruption", "desert camel caravan", "chess opening gambit", "bakery sourdough loaf",
          "comet telescope orbit", "tennis racket serve", "garden tulip bulb", "harbour ferry crossing",
          "jazz trumpet solo", "marathon runner finish", "castle moat drawbridge", "coral reef diver",
          "poetry sonnet rhyme", "kitten yarn play"]
DOCS = ([{"_id": "f1", "title": "Forward", "text": "A forward index stores a dense vector for every passage."},
         {"_id": "d1", "title": "", "text": "Dense passage vectors."}]
        + [{"_id": f"x{i:02d}", "title": "", "text": text} for i, text in enumerate(FILLER)])
QUERIES = [{"_id": "q1", "text": "forward index"}, {"_id": "q2", "text": "dense passage"},
           {"_id": "q3", "text": "apple river violin glacier"}, {"_id": "q4", "text": "the"}]
QRELS = [("q1", "f1", 1), ("q2", "d1", 1), ("q3", "x00", 1)]
SETTINGS = [PrfSettings("rm3"), PrfSettings("rm3", fb_terms=2, fb_docs=1, original_query_weight=0.2),
            PrfSettings("rocchio"), PrfSettings("rocchio", fb_terms=3, fb_docs=2, original_query_weight=0.5,
                                                feedback_weight=1.0)]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return write_beir(tmp_path_factory.mktemp("prf") / "beir", docs=DOCS, queries=QUERIES, qrels=QRELS)


@pytest.fixture(scope="module")
def index(collection):
    from indexing.build import build_index

    build_index(collection, collection.parent / "index", threads=1, progress=False)  # BM25 only
    return collection.parent / "index"


@pytest.fixture(scope="module")
def bm25(index):
    from ranker.sparse import BM25Searcher

    return BM25Searcher(index)


@pytest.fixture(scope="module")
def pyserini_searcher(index):
    from ranker.java import start_jvm

    start_jvm()  # ours first: pyserini then finds the JVM running with the Anserini jar
    from pyserini.search.lucene import LuceneSearcher

    return LuceneSearcher(str(index / "lucene"))


def pyserini_hits(searcher, prf: PrfSettings, text: str, k: int) -> list[tuple[str, float]]:
    """pyserini's ranking with the same feedback setting."""
    if prf.method == "rm3":
        searcher.unset_rocchio()
        searcher.set_rm3(prf.fb_terms, prf.fb_docs, prf.original_query_weight)
    else:
        searcher.unset_rm3()
        searcher.set_rocchio(top_fb_terms=prf.fb_terms, top_fb_docs=prf.fb_docs, alpha=prf.original_query_weight,
                             beta=prf.feedback_weight)
    return [(hit.docid, hit.score) for hit in searcher.search(text, k)]


# --- the settings -------------------------------------------------------------------------------------------------

def test_settings_take_anserinis_defaults():
    assert PrfSettings("rm3").describe() == {"method": "rm3", "fb_terms": 10, "fb_docs": 10,
                                             "original_query_weight": 0.5}
    assert PrfSettings("rocchio", fb_docs=3).describe() == {"method": "rocchio", "fb_terms": 10, "fb_docs": 3,
                                                            "original_query_weight": 1.0, "feedback_weight": 0.75}
    assert as_prf("rm3") == PrfSettings("rm3", 10, 10, 0.5) and as_prf("none") is None and as_prf(None) is None


@pytest.mark.java
def test_defaults_and_rm3_pool_are_the_jars():
    from ranker.java import autoclass

    args = autoclass("io.anserini.search.SearchCollection$Args")()
    assert args.rerankcutoff == RM3_FEEDBACK_POOL
    assert (int(args.rm3_fbTerms[0]), int(args.rm3_fbDocs[0]), float(args.rm3_originalQueryWeight[0])) == (
        DEFAULTS["rm3"]["fb_terms"], DEFAULTS["rm3"]["fb_docs"], DEFAULTS["rm3"]["original_query_weight"])
    assert (int(args.rocchio_topFbTerms[0]), int(args.rocchio_topFbDocs[0]), float(args.rocchio_alpha[0]),
            float(args.rocchio_beta[0])) == tuple(DEFAULTS["rocchio"].values())


@pytest.mark.parametrize("method, values, message", [
    ("rm4", {}, "prf must be one of rm3, rocchio, got 'rm4'"),
    ("rm3", {"fb_terms": 0}, "fb_terms must be a positive integer, got 0"),
    ("rocchio", {"fb_docs": 2.5}, "fb_docs must be a positive integer, got 2.5"),
    ("rm3", {"fb_docs": 51}, ("fb_docs must be at most 50 with rm3 (Anserini's RM3 takes its feedback documents "
                              "from the first 50 hits), got 51")),
    ("rm3", {"original_query_weight": 1.5}, "original_query_weight must be a number from 0 to 1, got 1.5"),
    ("rocchio", {"feedback_weight": -0.1}, "feedback_weight must be a number from 0 to 1, got -0.1"),
    ("rm3", {"feedback_weight": 0.5}, ("feedback_weight is Rocchio's beta and applies to prf rocchio only; RM3 "
                                       "gives its feedback terms 1 - original_query_weight")),
])
def test_bad_settings_are_one_line_errors(method, values, message):
    with pytest.raises(ValueError) as err:
        PrfSettings(method, **values)
    assert str(err.value) == message


def test_only_rm3_is_held_to_its_fifty_hits():
    assert PrfSettings("rocchio", fb_docs=200).fb_docs == 200  # Rocchio reads the first k hits
    with pytest.raises(ValueError, match=r"^--fb_docs must be at most 50 with rm3"):
        check_prf("rm3", fb_docs=60, name=lambda n: f"--{n}")


# --- the expanded query, by hand ----------------------------------------------------------------------------------

@pytest.mark.java
def test_rm3_expansion_by_hand(bm25):
    """"forward index" finds f1 alone. Its eight analysed terms (title and text: forward twice; stopwords "a" and
    "for" gone) give the relevance model forward 2/8 and index, store, dens, vector, everi, passag 1/8 each; the
    query's own terms get 1/2 each; mixed half and half: forward 1/4 + 1/8, index 1/4 + 1/16, the others 1/16."""
    terms = bm25.feedback_terms("forward index", "rm3")
    assert terms == pytest.approx({"forward": 0.375, "index": 0.3125, "store": 0.0625, "dens": 0.0625,
                                   "vector": 0.0625, "everi": 0.0625, "passag": 0.0625}, abs=1e-7)
    # Plain BM25 finds f1 only; the expanded query also finds d1 (dense, passage, vectors) and scores each
    # document as the weighted sum of its terms' BM25 scores.
    plain = dict(zip(*bm25.search_one("forward index", k=10)))
    assert list(plain) == ["f1"]
    docnos, scores = bm25.search_one("forward index", k=10, prf="rm3")
    assert docnos == ["f1", "d1"]
    words = {"forward": "forward", "index": "index", "store": "stores", "dens": "dense", "vector": "vector",
             "everi": "every", "passag": "passage"}  # a word for each stem (a stem is not its own stem: dens -> den)
    term_score = {(t, d): s for t in terms for d, s in zip(*bm25.search_one(words[t], k=20))}
    for docno, score in zip(docnos, scores):
        expected = sum(w * term_score.get((t, docno), 0.0) for t, w in terms.items())
        assert score == pytest.approx(expected, abs=2e-4)  # scores are rounded to 1e-4, as Anserini does


@pytest.mark.java
def test_rocchio_with_beta_zero_is_the_query_alone(bm25):
    """Rocchio with no weight on the feedback documents keeps the query's terms, L2-normalised: 1/sqrt(2) each."""
    terms = bm25.feedback_terms("forward index", PrfSettings("rocchio", feedback_weight=0.0))
    assert {t: w for t, w in terms.items() if w > 0} == pytest.approx({"forward": 2 ** -0.5, "index": 2 ** -0.5})


# --- the same rankings as pyserini --------------------------------------------------------------------------------

@pytest.mark.java
@pytest.mark.parametrize("prf", SETTINGS, ids=lambda p: "-".join(map(str, p.describe().values())))
def test_rankings_equal_pyserini(bm25, index, pyserini_searcher, prf):
    from ranker.index_layout import LUCENE_DOCNOS

    docnos_of_lucene = np.load(index / LUCENE_DOCNOS).astype(str).tolist()
    queries = pd.DataFrame({"qid": [q["_id"] for q in QUERIES], "query": [q["text"] for q in QUERIES]})
    for k in (1, 3, 20):
        run = bm25.search(queries, k=k, prf=prf).df
        for qid, text in zip(queries["qid"], queries["query"]):
            theirs = pyserini_hits(pyserini_searcher, prf, text, k)
            mine = run[run["qid"] == qid]
            assert list(zip(mine["docno"], mine["score"])) == theirs, (qid, k)
            docnos, scores = bm25.search_one(text, k=k, prf=prf)
            assert list(zip(docnos, scores.tolist())) == theirs
            docs, hit_scores = bm25.search_hits(text, k=k, prf=prf)
            assert [docnos_of_lucene[d] for d in docs] == [d for d, _ in theirs]
            assert hit_scores.tolist() == [s for _, s in theirs]
    assert set(bm25.search(queries, k=20, prf=prf).df["qid"]) == {"q1", "q2", "q3"}  # q4 is all stopwords


@pytest.mark.java
def test_index_without_docno_map_ranks_the_same(bm25, index, tmp_path):
    from ranker.index_layout import LUCENE_DOCNOS
    from ranker.sparse import BM25Searcher

    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    (copy / LUCENE_DOCNOS).unlink()
    queries = pd.DataFrame({"qid": ["q1", "q2"], "query": ["forward index", "dense passage"]})
    for prf in SETTINGS:
        assert BM25Searcher(copy).search(queries, k=20, prf=prf).df.equals(bm25.search(queries, k=20, prf=prf).df)


@pytest.mark.java
def test_index_without_document_vectors_is_an_error(collection, index, tmp_path):
    from ranker.index_layout import lucene_path
    from ranker.java import autoclass
    from ranker.sparse import BM25Searcher

    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    lucene = lucene_path(copy)
    shutil.rmtree(lucene)
    indexer = autoclass("io.anserini.index.SimpleIndexer")(["-input", "", "-index", str(lucene), "-collection",
                                                            "JsonCollection", "-threads", "1", "-storeRaw"])
    indexer.addRawDocuments([f'{{"id": "{d["_id"]}", "contents": "{d["title"]} {d["text"]}"}}' for d in DOCS])
    indexer.close()
    searcher = BM25Searcher(copy)
    assert searcher.search_one("forward index", k=3)[0] == ["f1"]  # plain BM25 works
    with pytest.raises(InputError) as err:
        searcher.search_one("forward index", k=3, prf="rm3")
    assert str(err.value) == (f"{lucene}: the index stores no document vectors, which RM3 and Rocchio read; rebuild "
                              "it with ff-index build")


# --- Fast-Forward and ff-rank run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ff_index(collection):
    from indexing.build import build_index

    build_index(collection, collection.parent / "ff-index", threads=1, progress=False, encoder="default")
    return collection.parent / "ff-index"


@pytest.mark.java
def test_fast_forward_reranks_the_expanded_querys_candidates(ff_index):
    from ranker.fast_forward import FastForward
    from ranker.fusion import interpolate
    from ranker.topics import read_queries

    ff = FastForward.open(ff_index)
    queries = read_queries(ff_index.parent / "beir", split="test")
    prf = PrfSettings("rm3", fb_terms=5)
    result = ff.rank(queries, k_s=20, alpha=0.35, prf=prf)
    assert result.sparse.df.equals(ff.sparse.search(queries, k=20, prf=prf).df)
    assert result.fused.df.equals(interpolate(result.sparse, result.dense, 0.35, normalization="minmax").df)
    assert result.sparse.df[result.sparse.df["qid"] == "q1"]["docno"].tolist() == ["f1", "d1"]
    plain = ff.rank(queries, k_s=20, alpha=0.35)
    assert plain.sparse.df[plain.sparse.df["qid"] == "q1"]["docno"].tolist() == ["f1"]
    hybrid = ff.rank(queries, k_s=20, alpha=0.35, dense_k=3, prf=prf)
    assert set(result.sparse.df["docno"]) <= set(hybrid.sparse.df["docno"])
    with pytest.raises(ValueError) as err:
        ff.rank(queries, prf="rm4")
    assert str(err.value) == "prf must be one of rm3, rocchio, got 'rm4'"


@pytest.mark.java
def test_ff_rank_run_with_prf(ff_index, bm25, tmp_path, capsys):
    from ranker.ranking import Ranking

    beir = ff_index.parent / "beir"
    out = tmp_path / "rm3.trec"
    assert main(["run", "--index", str(ff_index), "--queries", str(beir), "--k", "20", "--prf", "rm3",
                 "--fb-terms", "5", "--out", str(out), "--quiet"]) == 0
    queries = pd.DataFrame({"qid": ["q1", "q2", "q3"], "query": ["forward index", "dense passage",
                                                                   "apple river violin glacier"]})
    want = bm25.search(queries, k=20, prf=PrfSettings("rm3", fb_terms=5)).df
    got = Ranking.read(out).df
    assert got[["qid", "docno"]].values.tolist() == want[["qid", "docno"]].values.tolist()
    assert np.allclose(got["score"], want["score"], atol=1e-6)
    ff_out = tmp_path / "ff.trec"
    assert main(["run", "--mode", "ff", "--index", str(ff_index), "--queries", str(beir), "--k", "20", "--prf",
                 "rocchio", "--feedback-weight", "0.5", "--out", str(ff_out), "--quiet"]) == 0
    from ranker.fast_forward import FastForward

    ff = FastForward.open(ff_index)
    fused = ff.rank(queries, k_s=20, prf=PrfSettings("rocchio", feedback_weight=0.5)).fused.df
    assert Ranking.read(ff_out).df[["qid", "docno"]].values.tolist() == fused[["qid", "docno"]].values.tolist()


@pytest.mark.parametrize("extra, message", [
    (["--fb-terms", "5"], "--fb-terms needs --prf rm3 or --prf rocchio"),
    (["--prf", "rm3", "--fb-docs", "60"], ("--fb-docs must be at most 50 with rm3 (Anserini's RM3 takes its "
                                           "feedback documents from the first 50 hits), got 60")),
    (["--prf", "rm3", "--feedback-weight", "0.5"], ("--feedback-weight is Rocchio's beta and applies to --prf "
                                                    "rocchio only; RM3 gives its feedback terms 1 - "
                                                    "--original-query-weight")),
    (["--prf", "rocchio", "--original-query-weight", "1.5"], ("--original-query-weight must be a number from 0 to "
                                                              "1, got 1.5")),
    (["--prf", "rocchio", "--fb-terms", "0"], "--fb-terms must be a positive integer, got 0"),
    (["--prf", "rm3", "--mode", "dense"], ("--prf expands BM25 queries; --mode dense has no BM25 (use bm25, ff or "
                                           "hybrid)")),
])
def test_bad_prf_options(extra, message, tmp_path, capsys):
    """Checked before anything is opened (the index need not exist)."""
    assert main(["run", "--index", str(tmp_path / "none"), "--queries", str(tmp_path), "--out",
                 str(tmp_path / "o"), *extra]) == 2
    assert capsys.readouterr().err.strip() == f"ff-rank: error: {message}"


@pytest.mark.java
def test_tune_with_prf_stores_it(ff_index, tmp_path, capsys):
    import json

    beir = ff_index.parent / "beir"
    assert main(["tune", "--index", str(ff_index), "--queries", str(beir), "--split", "test", "--steps", "2",
                 "--prf", "rocchio", "--fb-docs", "2", "--quiet"]) == 0
    stored = json.loads((ff_index / "tuning.json").read_text())
    assert stored["prf"] == {"method": "rocchio", "fb_terms": 10, "fb_docs": 2, "original_query_weight": 1.0,
                             "feedback_weight": 0.75}
    capsys.readouterr()
    assert main(["run", "--mode", "ff", "--alpha", "auto", "--prf", "rocchio", "--fb-docs", "2", "--index",
                 str(ff_index), "--queries", str(beir), "--out", str(tmp_path / "run.trec"), "--quiet"]) == 0
    assert "(tuned on test with rocchio feedback)" in capsys.readouterr().out
