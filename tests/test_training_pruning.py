"""Layer pruning: MiniLM and tiny random decoders keep N layers, save, reload and give the same embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ranker.errors import InputError

TEXTS = ["dense vector forward index", "Boil the pasta in salted water for ten minutes.", "bm25"]
DECODERS = {  # family: (config class, model class) in transformers
    "llama": ("LlamaConfig", "LlamaModel"),
    "mistral": ("MistralConfig", "MistralModel"),
    "qwen2": ("Qwen2Config", "Qwen2Model"),
    "phi3": ("Phi3Config", "Phi3Model"),
}


def make_tiny_decoder(path: Path, family: str = "llama", layers: int = 4, seed: int = 0, **config: object) -> Path:
    """A randomly initialised decoder (hidden size 32) saved with MiniLM's tokenizer; built offline."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    from ranker.encoders import resolve_encoder

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_encoder(None)))
    config_cls, model_cls = (getattr(transformers, name) for name in DECODERS[family])
    settings = dict(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=128,
                    pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.sep_token_id)
    settings.update(config)
    torch.manual_seed(seed)
    model_cls(config_cls(**settings)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def reload(path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def minilm_pruned(tmp_path_factory):
    """all-MiniLM-L6-v2 pruned to 4 layers, in memory and saved."""
    from training.models import save_model
    from training.pruning import prune_layers

    model = prune_layers(None, 4, device="cpu")
    out = save_model(model, tmp_path_factory.mktemp("minilm") / "minilm-4")
    return model, out


def test_minilm_6_to_4_reloads_with_identical_embeddings(minilm_pruned):
    from training.pruning import num_layers

    model, out = minilm_pruned
    assert num_layers(model) == 4
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 4
    again = reload(out)
    assert num_layers(again) == 4
    assert [type(m).__name__ for m in again] == ["Transformer", "Pooling", "Normalize"]  # pooling kept
    np.testing.assert_array_equal(model.encode(TEXTS), again.encode(TEXTS))


def test_pruned_minilm_is_what_the_full_model_computes_after_4_layers(minilm_pruned):
    import torch

    from training.models import load_model

    full = load_model(None, device="cpu")
    features = full.preprocess(TEXTS)
    with torch.no_grad():
        hidden = full[0].auto_model(**{k: v for k, v in features.items() if k != "prompt_length"},
                                    output_hidden_states=True).hidden_states[4]
        out = full[2](full[1]({**features, "token_embeddings": hidden}))["sentence_embedding"]
    np.testing.assert_allclose(minilm_pruned[0].encode(TEXTS), out.numpy(), atol=1e-5)


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_tiny_decoder_keeps_n_layers_and_reloads(tmp_path, family):
    from training.models import save_model
    from training.pruning import num_layers, prune_layers

    source = make_tiny_decoder(tmp_path / family, family, layers=4)
    model = prune_layers(source, 2, pooling="lasttoken", device="cpu")
    assert num_layers(model) == 2
    out = save_model(model, tmp_path / "pruned")
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert len(config.get("layer_types") or [None, None]) == 2
    again = reload(out)
    assert num_layers(again) == 2
    assert again[1].pooling_mode == "lasttoken"
    np.testing.assert_allclose(model.encode(TEXTS), again.encode(TEXTS), atol=1e-6)


def test_qwen2_window_fields_follow_the_layers(tmp_path):
    from training.models import save_model
    from training.pruning import prune_layers

    source = make_tiny_decoder(tmp_path / "qwen", "qwen2", layers=4, use_sliding_window=True, max_window_layers=3,
                               layer_types=["full_attention"] * 3 + ["sliding_attention"])
    out = save_model(prune_layers(source, 2, device="cpu"), tmp_path / "pruned")
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["max_window_layers"]) == (2, 2)
    assert config["layer_types"] == ["full_attention", "full_attention"]
    assert reload(out).encode(TEXTS).shape == (3, 32)


@pytest.mark.parametrize("pooling", ["mean", "cls", "lasttoken", "weightedmean"])
def test_pooling_options_survive_the_round_trip(tmp_path, pooling):
    from training.models import save_model
    from training.pruning import prune_layers

    source = make_tiny_decoder(tmp_path / "llama", layers=2)
    model = prune_layers(source, 1, pooling=pooling, device="cpu")
    out = save_model(model, tmp_path / "pruned")
    again = reload(out)
    assert again[1].pooling_mode == pooling
    np.testing.assert_allclose(model.encode(TEXTS), again.encode(TEXTS), atol=1e-6)


def test_weightedmean_weights_later_positions_more(tmp_path):
    import torch

    from training.models import set_pooling
    from training.pruning import prune_layers

    model = prune_layers(make_tiny_decoder(tmp_path / "llama", layers=2), 1, device="cpu")
    set_pooling(model, "weightedmean")
    tokens = torch.tensor([[[1.0], [0.0], [0.0]]])  # position weights 1, 2, 3: 1*1 / 6
    pooled = model[1]({"token_embeddings": tokens, "attention_mask": torch.ones(1, 3, dtype=torch.long)})
    assert pooled["sentence_embedding"].item() == pytest.approx(1 / 6)


@pytest.mark.parametrize("total, ratio, keep", [(6, 1 / 3, 4), (6, 0.5, 3), (4, 0.25, 3), (2, 0.9, 1), (6, 0, 6)])
def test_keep_for_ratio(total, ratio, keep):
    from training.pruning import keep_for_ratio

    assert keep_for_ratio(total, ratio) == keep


def test_prune_ratio(tmp_path):
    from training.pruning import num_layers, prune_ratio

    model = prune_ratio(make_tiny_decoder(tmp_path / "llama", layers=4), 0.25, device="cpu")
    assert num_layers(model) == 3 and model[0].auto_model.config.num_hidden_layers == 3


@pytest.mark.parametrize("keep, message", [(0, "keep must lie between 1 and the model's 4 layers, got 0"),
                                           (5, "keep must lie between 1 and the model's 4 layers, got 5")])
def test_bad_keep_is_refused(tmp_path, keep, message):
    from training.pruning import prune_layers

    with pytest.raises(InputError, match=message):
        prune_layers(make_tiny_decoder(tmp_path / "llama", layers=4), keep, device="cpu")


def test_save_refuses_to_clobber(tmp_path, minilm_pruned):
    from training.models import save_model

    model, _ = minilm_pruned
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists; pass --force"):
        save_model(model, tmp_path / "notes")
    with pytest.raises(InputError, match="non-empty directory that is not a model"):
        save_model(model, tmp_path / "notes", force=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    out = save_model(model, tmp_path / "m")
    save_model(model, out, force=True, extra={"x.json": {"a": 1}})  # a model directory may be replaced
    assert json.loads((out / "x.json").read_text()) == {"a": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial leftovers


def make_decoder_tokenizer():
    """A word-level fast tokenizer that, like Llama's, adds BOS but not EOS (built offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<pad>", *sorted({w for t in TEXTS for w in t.lower().replace(".", "").split()})]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def test_last_token_pooling_appends_eos_and_the_saved_model_keeps_it(tmp_path):
    from training.models import save_model
    from training.pruning import prune_layers

    tokenizer = make_decoder_tokenizer()
    assert tokenizer("bm25")["input_ids"] == [1, tokenizer.convert_tokens_to_ids("bm25")]  # BOS, no EOS
    source = make_tiny_decoder(tmp_path / "llama", "llama", layers=3, vocab_size=len(tokenizer),
                               pad_token_id=3, bos_token_id=1, eos_token_id=2)
    tokenizer.save_pretrained(source)  # replaces MiniLM's tokenizer
    model = prune_layers(source, 2, pooling="lasttoken", device="cpu")
    ids = model.tokenizer("bm25")["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 3  # <s> bm25 </s>
    out = save_model(model, tmp_path / "pruned")
    again = reload(out)
    assert again.tokenizer("bm25")["input_ids"] == ids
    np.testing.assert_allclose(model.encode(TEXTS), again.encode(TEXTS), atol=1e-6)
    mean = prune_layers(source, 2, pooling="mean", device="cpu")  # other poolings leave the tokenizer alone
    assert mean.tokenizer("bm25")["input_ids"][-1] != 2
