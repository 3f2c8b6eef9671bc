"""``ff-train dev-split``, ``distill`` and ``evaluate`` on the tiny collection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir


def test_dev_split_holds_out_queries_by_id_and_links_the_rest(tmp_path, capsys):
    from ranker.topics import load_qrels
    from training.cli import main
    from training.devsplit import held_out

    qrels = [(f"q{i}", "007", 1) for i in range(20)] + [("q0", "5", 2)]
    beir = write_beir(tmp_path / "src", qrels=qrels)
    (beir / "qrels" / "train.tsv").write_text((beir / "qrels" / "test.tsv").read_text())
    assert main(["dev-split", "--data", str(beir), "--out", str(tmp_path / "out"), "--fraction", "0.25"]) == 0
    assert "train: 15 queries, dev: 5 queries" in capsys.readouterr().out
    out = tmp_path / "out"
    assert (out / "corpus.jsonl").is_symlink() and (out / "qrels" / "test.tsv").is_symlink()
    train, dev = load_qrels(out, "train"), load_qrels(out, "dev")
    assert set(train["qid"]).isdisjoint(dev["qid"]) and len(train) + len(dev) == len(qrels)
    assert set(dev["qid"]) == held_out([q for q, _, _ in qrels], 0.25)  # deterministic: IDs and seed only
    assert held_out([q for q, _, _ in qrels], 0.25, seed=1) != set(dev["qid"])
    again = main(["dev-split", "--data", str(beir), "--out", str(out), "--fraction", "0.25"])
    assert again == 2 and "already exists" in capsys.readouterr().err


def test_dev_split_refuses_an_empty_side(tmp_path):
    from ranker.errors import InputError
    from training.devsplit import held_out

    with pytest.raises(InputError, match="leaves an empty split"):
        held_out(["a", "b"], 0.1)
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        held_out(["a", "b"], 1.0)


def test_read_texts_from_beir_jsonl_and_lines(tmp_path):
    from ranker.errors import InputError
    from training.distill import read_texts

    beir = write_beir(tmp_path / "tiny")
    texts = read_texts(beir, query_splits=("test",))
    assert len(texts) == len(TINY_DOCS) + len(TINY_QUERIES)
    assert texts[0] == "Forward indexes\nA forward index stores one dense vector per document."
    assert texts[-1] == TINY_QUERIES[-1]["text"]
    short = read_texts(beir, query_splits=("test",), short=True)
    assert short[:2] == ["Forward indexes", "A forward index stores one dense vector per document."]
    assert "Cooking" in short and texts[0] not in short  # titles and sentences, not whole documents
    from training.distill import query_like

    assert query_like("T\nOne two three four. Too short. Five six seven eight! Nine ten eleven twelve?", 2) == [
        "T", "One two three four.", "Five six seven eight!"]
    lines = tmp_path / "texts.txt"
    lines.write_text("one\n\ntwo\none\n")
    assert read_texts(lines) == ["one", "two"]
    bad = tmp_path / "texts.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": 1}\n')
    with pytest.raises(InputError, match=r"texts.jsonl:2: expected an object with a string field 'text'"):
        read_texts(bad)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """all-MiniLM-L6-v2 pruned to 2 layers."""
    from training.cli import main

    out = tmp_path_factory.mktemp("models") / "minilm-2"
    assert main(["prune", "--keep", "2", "--out", str(out), "--quiet"]) == 0
    return out


def test_distill_moves_the_student_towards_the_teacher_and_caches_the_teacher(student, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    from training.cli import main

    beir = write_beir(tmp_path / "tiny")
    texts = [d["title"] + "\n" + d["text"] for d in TINY_DOCS]
    teacher = SentenceTransformer(str(_default_dir()), device="cpu", local_files_only=True).encode(texts)

    def agreement(model_dir):
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        return float(np.mean(np.sum(model.encode(texts) * teacher, axis=1)))  # both unit length: mean cosine

    args = ["distill", "--texts", str(beir), "--query-splits", "test", "--model", str(student),
            "--max-steps", "8", "--batch-size", "4", "--lr", "5e-4", "--warmup", "0", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert agreement(tmp_path / "a") > agreement(student) + 0.02
    run = json.loads((tmp_path / "a" / "ff_distillation.json").read_text())
    assert run["texts"] == len(TINY_DOCS) + len(TINY_QUERIES) and run["steps"] == 8
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # second run: teacher vectors from the cache
    assert "from the cache" in capsys.readouterr().out


def _default_dir():
    from ranker.encoders import resolve_encoder

    return resolve_encoder(None)


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    from indexing.build import build_index

    root = tmp_path_factory.mktemp("ff")
    beir = write_beir(root / "tiny")
    build_index(beir, root / "index", encoder="default", progress=False)
    return beir, root / "index"


@pytest.mark.java
def test_evaluate_matches_ff_rank_runs_and_reports_groups(ff_index, student, tmp_path, capsys):
    from ranker.cli import main as ff_rank
    from training.cli import main

    beir, index = ff_index
    report_file = tmp_path / "report.json"
    assert main(["evaluate", "--model", "default", str(student), "--index", str(index), "--data", str(beir),
                 "--alpha", "0.5", "--work", str(tmp_path / "work"), "--json", str(report_file), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fast_forward nDCG@10 by query length" in printed and "query encoding (1 thread): median" in printed
    own, pruned = json.loads(report_file.read_text())
    assert own["layers"] == 6 and pruned["layers"] == 2
    assert own["forward_index"] == str(index / "vectors")  # the index's own vectors are reused
    assert pruned["forward_index"].startswith(str(tmp_path / "work"))
    for mode, name in (("ff", "fast_forward"), ("dense", "dense"), ("bm25", "bm25")):
        run = tmp_path / f"{mode}.trec"
        assert ff_rank(["run", "--mode", mode, "--index", str(index), "--queries", str(beir), "--split", "test",
                        "--alpha", "0.5", "--out", str(run), "--quiet"]) == 0
        capsys.readouterr()
        assert ff_rank(["eval", "--qrels", str(beir), "--split", "test", str(run), "-m", "nDCG@10", "--json"]) == 0
        expected = json.loads(capsys.readouterr().out)["measures"]["nDCG@10"]
        assert own["scores"][name]["nDCG@10"] == pytest.approx(expected, abs=1e-4)
    groups = own["groups"]
    assert sum(groups["queries"].values()) == len(TINY_QUERIES)
    values = groups["nDCG@10"]["fast_forward"]
    assert groups["worst"]["fast_forward"] == min(values, key=values.get)
    assert own["encode_latency"]["median_ms"] > 0



def test_each_corpus_a_model_encodes_gets_its_own_cached_vectors(ff_index, student, tmp_path):
    from ranker.forward_index import ForwardIndex
    from training.evaluate import forward_index_for

    beir, index = ff_index
    other = write_beir(tmp_path / "other", docs=TINY_DOCS[:3])
    work = tmp_path / "work"
    first = forward_index_for(student, index, beir / "corpus.jsonl", work, progress=False)
    second = forward_index_for(student, index, other / "corpus.jsonl", work, progress=False)  # --also
    assert first != second and first.parent == second.parent == work
    assert ForwardIndex.open(first).num_docs == len(TINY_DOCS) and ForwardIndex.open(second).num_docs == 3
    assert forward_index_for(student, index, beir / "corpus.jsonl", work, progress=False) == first  # reused


@pytest.fixture(scope="module")
def distilled(student, tmp_path_factory):
    """The 2-layer student after 2 distillation steps from the packaged MiniLM (the tiny index's encoder)."""
    from training.cli import main

    root = tmp_path_factory.mktemp("distilled")
    beir = write_beir(root / "tiny")
    assert main(["distill", "--texts", str(beir), "--query-splits", "test", "--model", str(student), "--max-steps", "2",
                 "--batch-size", "4",
                 "--device", "cpu", "--cache-dir", str(root / "cache"), "--out", str(root / "model"),
                 "--quiet"]) == 0
    return root / "model"


@pytest.mark.java
def test_a_distilled_student_can_encode_the_index_queries(ff_index, student, distilled, tmp_path, capsys):
    import shutil

    from indexing.cli import main as ff_index_cli
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from ranker.errors import InputError
    from ranker.fast_forward import FastForward

    beir, built = ff_index
    index = tmp_path / "index"
    shutil.copytree(built, index)
    run = json.loads((distilled / "ff_distillation.json").read_text())
    assert run["teacher_fingerprint"] == encoder_fingerprint(resolve_encoder(None))
    assert FastForward.open(index, encoder=str(distilled)).encoder.model[0].auto_model.config.num_hidden_layers == 2
    with pytest.raises(InputError, match="was not distilled from it"):
        FastForward.open(index, encoder=str(student))  # pruned, but not distilled: another vector space

    assert ff_index_cli(["query-encoder", "--index", str(index), "--encoder", str(distilled)]) == 0
    assert f"queries are encoded with {distilled}" in capsys.readouterr().out
    assert FastForward.open(index).encoder.model[0].auto_model.config.num_hidden_layers == 2  # what ff-serve opens
    assert ff_index_cli(["query-encoder", "--index", str(index), "--encoder", str(student)]) == 2
    assert "neither the encoder that built" in capsys.readouterr().err
    assert ff_index_cli(["query-encoder", "--index", str(index), "--reset"]) == 0
    assert FastForward.open(index).encoder.model[0].auto_model.config.num_hidden_layers == 6

    moved = tmp_path / "moved"
    shutil.copytree(distilled, moved)
    assert ff_index_cli(["query-encoder", "--index", str(index), "--encoder", str(moved)]) == 0
    (moved / "README.md").write_text("changed")
    with pytest.raises(InputError, match="changed since it was recorded; run ff-index query-encoder again"):
        FastForward.open(index)


@pytest.mark.java
def test_evaluate_queries_only_keeps_the_index_vectors(ff_index, distilled, tmp_path):
    from training.evaluate import evaluate_encoder

    beir, index = ff_index
    report = evaluate_encoder(str(distilled), index, beir, split="test", tune_split=None, alpha=0.5,
                              work=tmp_path / "work", progress=False, queries_only=True)
    assert report["forward_index"] == str(index / "vectors") and report["layers"] == 2
    assert report["documents_encoded_by"] == "the index encoder"
    assert not (tmp_path / "work").exists()  # nothing encoded


@pytest.mark.java
def test_evaluate_also_reports_other_collections_beside_the_main_one(ff_index, distilled, tmp_path, capsys):
    from training.cli import main

    beir, index = ff_index
    other = write_beir(tmp_path / "other", qrels=[("q1", "5", 1), ("q3", "4", 2)])  # same documents, other judgements
    report_file = tmp_path / "report.json"
    assert main(["evaluate", "--model", "default", str(distilled), "--index", str(index), "--data", str(beir),
                 "--alpha", "0.5", "--queries-only", "--also", f"{beir}={index}", f"{other}={index}",
                 "--also-alpha", "same", "--json", str(report_file), "--work", str(tmp_path / "work"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for report in json.loads(report_file.read_text()):
        same, changed = report["also"]
        assert same["scores"] == report["scores"]  # the main collection again: the same numbers
        assert same["name"] == "tiny" and changed["name"] == "other" and changed["queries"] == 2
        assert changed["scores"]["fast_forward"] != report["scores"]["fast_forward"]
        assert (f"also other (test: 2 queries, alpha 0.50 minmax): dense nDCG@10 "
                f"{changed['scores']['dense']['nDCG@10']:.4f}" in printed)
    assert "| model | layers | tiny dense | tiny FF | tiny dense | tiny FF | other dense | other FF |" in printed
    assert not (tmp_path / "work").exists()  # queries only: nothing encoded

    # by default the other collections get Fast-Forward's default alpha, not the main collection's
    assert main(["evaluate", "--model", "default", "--index", str(index), "--data", str(beir), "--alpha", "0.5",
                 "--queries-only", "--also", f"{beir}={index}", "--json", str(report_file), "--quiet"]) == 0
    (report,) = json.loads(report_file.read_text())
    assert report["also"][0]["alpha"] == 0.35 and report["also"][0]["normalization"] == "minmax"
    assert report["also"][0]["scores"]["dense"] == report["scores"]["dense"]  # alpha does not touch dense-only
    assert "also tiny (test: 3 queries, alpha 0.35 minmax)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["evaluate", "--model", "default", "--index", str(index), "--data", str(beir), "--alpha", "0.5",
              "--also", f"{beir}={index}", "--also-alpha", "2"])
    assert bad.value.code == 2
    assert "--also-alpha: expected a number in [0, 1] or 'same', got '2'" in capsys.readouterr().err

    assert main(["evaluate", "--model", "default", "--index", str(index), "--data", str(beir), "--alpha", "0.5",
                 "--also", str(beir)]) == 2
    assert capsys.readouterr().err == (f"ff-train: error: --also {beir}: expected DATA=INDEX (a BEIR directory and "
                                       "the index built from it)\n")
