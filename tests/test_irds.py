"""irds:<dataset id> corpora, queries and qrels, on ir_datasets datasets registered from local files."""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

ir_datasets = pytest.importorskip("ir_datasets")  # the 'irds' extra

from ir_datasets.datasets.base import Dataset  # noqa: E402
from ir_datasets.datasets.beir import BeirDocs, BeirQrels, BeirQueries, BeirTitleDoc  # noqa: E402
from ir_datasets.formats import BaseDocs, GenericQuery, TrecQrels, TsvDocs, TsvQueries  # noqa: E402
from ir_datasets.util import LocalDownload  # noqa: E402

from indexing import cli as index_cli  # noqa: E402
from indexing.build import build_index  # noqa: E402
from indexing.corpus import Document, IrdsCorpus, corpus_file, count_documents, file_checksum, read_corpus  # noqa: E402
from ranker import cli as rank_cli  # noqa: E402
from ranker.errors import InputError  # noqa: E402
from ranker.sparse import BM25Searcher  # noqa: E402
from ranker.topics import load_qrels, read_queries  # noqa: E402
from ranker.trec import read_qrels  # noqa: E402
from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir  # noqa: E402

pytestmark = pytest.mark.java


@pytest.fixture(scope="module", autouse=True)
def irds_home(tmp_path_factory):
    """ir_datasets writes its doc stores under IR_DATASETS_HOME: keep them in a temporary directory."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("irds-home")
        patch.setenv("IR_DATASETS_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def registered():
    """``register(*components) -> 'irds:<fresh id>'``; the ids are removed from the registry afterwards."""
    names: list[str] = []

    def register(*components) -> str:
        name = f"fftest/{uuid.uuid4().hex[:12]}"
        ir_datasets.registry.register(name, Dataset(*components))
        names.append(name)
        return f"irds:{name}"

    yield register
    for name in names:
        ir_datasets.registry._registered.pop(name, None)


def beir_dataset(register, beir: Path) -> str:
    """The tiny BEIR files as ir_datasets' own BEIR components read them (what irds:beir/<name> uses)."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    return register(BeirDocs(name, LocalDownload(beir / "corpus.jsonl"), BeirTitleDoc),
                    BeirQueries(name, LocalDownload(beir / "queries.jsonl"), GenericQuery),
                    BeirQrels(LocalDownload(beir / "qrels" / "test.tsv"), qrels_defs={}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, registered):
    """The tiny BEIR collection, on disk and as an ir_datasets dataset, each indexed (BM25 only)."""
    root = tmp_path_factory.mktemp("irds")
    beir = write_beir(root / "tiny")
    source = beir_dataset(registered, beir)
    assert index_cli.main(["build", "--corpus", source, "--index", str(root / "irds-index"), "--no-vectors",
                           "--threads", "1", "--quiet"]) == 0
    build_index(beir, root / "beir-index", threads=1, progress=False)
    return {"beir": beir, "source": source, "irds_index": root / "irds-index", "beir_index": root / "beir-index",
            "root": root}


class ListDocs(BaseDocs):
    """Docs handler over an in-memory list (to test how document types map)."""

    def __init__(self, docs: list, cls: type) -> None:
        self._docs, self._cls = docs, cls

    def docs_iter(self):
        return iter(self._docs)

    def docs_cls(self):
        return self._cls


class FailingDocs(ListDocs):
    def docs_iter(self):
        raise ConnectionError("Failed to resolve 'example.invalid'")


def test_irds_corpus_reads_like_the_beir_files(tiny):
    docs = list(read_corpus(tiny["source"]))
    assert docs == list(read_corpus(tiny["beir"]))
    assert docs[2] == Document("3", "", TINY_DOCS[2]["text"])  # empty title: contents is the text alone
    assert count_documents(tiny["source"]) == len(TINY_DOCS)
    assert corpus_file(tiny["source"]) == IrdsCorpus(tiny["source"])


def test_index_built_from_irds_equals_index_from_beir_files(tiny):
    irds_index, beir_index = tiny["irds_index"], tiny["beir_index"]
    assert np.array_equal(np.load(irds_index / "lucene_docnos.npy"), np.load(beir_index / "lucene_docnos.npy"))
    queries = read_queries(tiny["beir"], split="test")
    assert BM25Searcher(irds_index).search(queries, k=10) == BM25Searcher(beir_index).search(queries, k=10)
    for doc in TINY_DOCS:
        assert BM25Searcher(irds_index).document(doc["_id"]) == BM25Searcher(beir_index).document(doc["_id"])


def test_manifest_records_the_dataset_and_a_stream_checksum(tiny):
    corpus = json.loads((tiny["irds_index"] / "manifest.json").read_text())["corpus"]
    digest = hashlib.sha256()
    for doc in TINY_DOCS:
        digest.update((json.dumps([doc["_id"], doc["title"], doc["text"]], ensure_ascii=False) + "\n").encode())
    assert corpus["path"] == corpus["file"] == tiny["source"]
    assert corpus["checksum"] == f"sha256:{digest.hexdigest()}" == file_checksum(corpus_file(tiny["source"]))
    assert corpus["documents"] == len(TINY_DOCS)
    assert corpus["ir_datasets"] == {"dataset": tiny["source"].removeprefix("irds:"), "version": ir_datasets.__version__}


def test_checksum_follows_the_documents(tmp_path, registered):
    changed = [dict(d) for d in TINY_DOCS]
    changed[3]["text"] += "!"
    a = beir_dataset(registered, write_beir(tmp_path / "a"))
    b = beir_dataset(registered, write_beir(tmp_path / "b", docs=changed))
    assert file_checksum(IrdsCorpus(a)) == file_checksum(IrdsCorpus(a)) != file_checksum(IrdsCorpus(b))


def test_queries_and_qrels_equal_the_beir_files(tiny):
    pd.testing.assert_frame_equal(read_queries(tiny["source"]), read_queries(tiny["beir"], split="test"))
    pd.testing.assert_frame_equal(read_queries(tiny["source"], split="train"), read_queries(tiny["beir"]))
    pd.testing.assert_frame_equal(load_qrels(tiny["source"]), load_qrels(tiny["beir"], split="test"))


def test_ff_rank_run_and_eval_with_irds_topics(tiny, tmp_path, capsys):
    index = str(tiny["beir_index"])
    for name, queries in (("irds", tiny["source"]), ("beir", str(tiny["beir"]))):
        assert rank_cli.main(["run", "--index", index, "--queries", queries, "--quiet", "--threads", "1",
                              "--out", str(tmp_path / f"{name}.trec")]) == 0
    assert (tmp_path / "irds.trec").read_bytes() == (tmp_path / "beir.trec").read_bytes()
    capsys.readouterr()
    results = []
    for qrels in (tiny["source"], str(tiny["beir"] / "qrels" / "test.tsv")):
        assert rank_cli.main(["eval", str(tmp_path / "irds.trec"), "--qrels", qrels, "--json", "--per-query"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1] and results[0]["queries"] == len(TINY_QUERIES)


def test_generic_tsv_and_trec_formats(tmp_path, registered):
    (tmp_path / "docs.tsv").write_text("a\tfirst document\nb\tsecond one\n")
    (tmp_path / "queries.tsv").write_text("1\tfirst\n2\tsecond\n")
    (tmp_path / "qrels.txt").write_text("1 0 a 1\n2 0 b 2\n")
    source = registered(TsvDocs(LocalDownload(tmp_path / "docs.tsv")),
                        TsvQueries(LocalDownload(tmp_path / "queries.tsv")),
                        TrecQrels(LocalDownload(tmp_path / "qrels.txt"), {}))
    assert list(read_corpus(source)) == list(read_corpus(tmp_path / "docs.tsv"))
    pd.testing.assert_frame_equal(read_queries(source), read_queries(tmp_path / "queries.tsv"))
    pd.testing.assert_frame_equal(load_qrels(source), read_qrels(tmp_path / "qrels.txt"))


class BodyDoc(NamedTuple):
    doc_id: str
    title: str
    body: str
    url: str


class AbstractDoc(NamedTuple):
    doc_id: str
    abstract: str

    def default_text(self) -> str:
        return f"summary: {self.abstract}"


def test_document_fields_map_to_title_and_text(registered):
    body = registered(ListDocs([BodyDoc("x", "Title", "The body.", "http://x")], BodyDoc))
    assert list(read_corpus(body)) == [Document("x", "Title", "The body.")]
    other = registered(ListDocs([AbstractDoc("y", "short")], AbstractDoc))
    assert list(read_corpus(other)) == [Document("y", "", "summary: short")]


def test_bad_documents_are_reported(registered):
    dup = registered(ListDocs([BodyDoc("x", "", "a", ""), BodyDoc("x", "", "b", "")], BodyDoc))
    with pytest.raises(InputError, match=r"document 2: duplicate document id 'x' \(first was document 1\)"):
        list(read_corpus(dup))
    spaced = registered(ListDocs([BodyDoc("x y", "", "a", "")], BodyDoc))
    with pytest.raises(InputError, match="contains whitespace"):
        list(read_corpus(spaced))
    empty = registered(ListDocs([], BodyDoc))
    with pytest.raises(InputError, match="corpus is empty"):
        list(read_corpus(empty))


def test_unknown_dataset_is_one_line_error(tmp_path, capsys):
    assert index_cli.main(["build", "--corpus", "irds:no-such/dataset", "--index", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ff-index: error: irds:no-such/dataset: unknown ir_datasets dataset 'no-such/dataset'")
    assert err.count("\n") == 1 and not (tmp_path / "i").exists()
    assert rank_cli.main(["eval", str(tmp_path / "run"), "--qrels", "irds:no-such/dataset"]) == 2
    assert "unknown ir_datasets dataset" in capsys.readouterr().err
    with pytest.raises(InputError, match="expected irds:<dataset id>"):
        read_queries("irds:")


def test_dataset_without_the_entity_is_one_line_error(tmp_path, registered, capsys):
    (tmp_path / "queries.tsv").write_text("1\tfirst\n")
    source = registered(TsvQueries(LocalDownload(tmp_path / "queries.tsv")))
    assert index_cli.main(["build", "--corpus", source, "--index", str(tmp_path / "i"), "--no-vectors"]) == 2
    err = capsys.readouterr().err
    assert f"{source}: dataset '{source[5:]}' has no docs (it provides: queries)" in err and err.count("\n") == 1
    with pytest.raises(InputError, match="has no qrels"):
        load_qrels(source)
    docs_only = registered(ListDocs([BodyDoc("x", "", "a", "")], BodyDoc))
    with pytest.raises(InputError, match=r"has no queries \(it provides: docs\)"):
        read_queries(docs_only)


def test_unreadable_dataset_is_one_line_error(registered):
    source = registered(FailingDocs([], BodyDoc))
    with pytest.raises(InputError, match="cannot read the dataset's docs \\(ConnectionError") as err:
        list(read_corpus(source))
    assert "\n" not in str(err.value)


def test_missing_ir_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ir_datasets", None)  # as if it were not installed
    with pytest.raises(InputError, match="install the 'irds' extra"):
        read_corpus("irds:beir/scifact").__next__()
    with pytest.raises(InputError, match="install the 'irds' extra"):
        load_qrels("irds:beir/scifact/test")
