"""docs/training.py renders the ablation table with the out-of-domain column from ff-train evaluate's reports."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("docs_training", REPO / "docs" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(ff: float, away_ff: float | None) -> dict:
    scores = {"bm25": {"nDCG@10": 0.6789}, "dense": {"nDCG@10": ff - 0.1},
              "fast_forward": {"nDCG@10": ff, "R@1000": 0.9767}}
    out = {"model": "m", "split": "test", "scores": scores, "alpha": {"alpha": 0.2, "normalization": "minmax"},
           "groups": {"worst": {"fast_forward": "short"}, "nDCG@10": {"fast_forward": {"short": 0.5}}},
           "encode_latency": {"median_ms": 9.0}, "train_seconds": 12.0}
    if away_ff is not None:
        out["also"] = [{"name": "cranfield", "alpha": 0.35, "normalization": "minmax", "scores": {"dense": {"nDCG@10": away_ff - 0.05},
                                                         "fast_forward": {"nDCG@10": away_ff}}}]
    return out


def test_render_puts_the_other_collection_beside_each_row(tmp_path):
    script = load_script()
    (tmp_path / "original.json").write_text(json.dumps(report(0.7344, 0.4101)))
    (tmp_path / "pruned.json").write_text(json.dumps(report(0.6786, None)))
    rows = {"original": ("as shipped", None), "pruned": ("4 layers", None), "distill": ("distilled", None)}
    args = argparse.Namespace(train_epochs=1.0, distill_epochs=1.0, query_tune_epochs=3.0,
                              also_data="../shared/data/cranfield")
    stopped = dict(report(0.7601, 0.4212), query_tuning={"steps": 60, "held_out": {"best_step": 15}})
    (tmp_path / "stop-dev.json").write_text(json.dumps(stopped))
    stopping = {"stop-fixed": ("fixed steps", None), "stop-dev": ("early stopping", None)}
    page = script.render(rows, stopping, tmp_path, args, tmp_path / "missing.json")
    assert "| Cranfield dense | Cranfield FF |" in page
    assert "| stop-fixed | fixed steps | not run yet |" in page
    assert "| stop-dev | early stopping | 0.7601 | 0.3712 | 0.4212 | 15 / 60 | 12 |" in page
    assert "| original | as shipped | 0.6344 | 0.7344 | 0.3601 | 0.4101 | 0.20 minmax |" in page
    assert "| pruned | 4 layers | 0.5786 | 0.6786 | not run yet |  | 0.20 minmax |" in page
    assert "| distill | distilled | not run yet |" in page


def test_a_report_without_the_other_collection_is_not_reused(tmp_path, monkeypatch):
    import ranker.encoders

    script = load_script()
    monkeypatch.setattr(ranker.encoders, "resolve_encoder", lambda name: name)
    with_also = dict(report(0.7, 0.4), model="m", documents_encoded_by="the index encoder")
    (tmp_path / "report.json").write_text(json.dumps([dict(report(0.7, None), model="m"), with_also]))
    assert script.earlier_report(tmp_path, "m", False, ["cranfield"]) is None  # no Cranfield in it
    assert script.earlier_report(tmp_path, "m", True, ["cranfield"])["also"][0]["name"] == "cranfield"
    assert script.earlier_report(tmp_path, "m", True, []) is None
    with_also["also"][0]["alpha"] = 0.2  # scored at the main collection's alpha: not the table's setting
    (tmp_path / "report.json").write_text(json.dumps([with_also]))
    assert script.earlier_report(tmp_path, "m", True, ["cranfield"]) is None
