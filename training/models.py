"""Load a sentence-transformers model and find the parts that pruning and L3 Prune touch.

Encoders (BERT family) keep their blocks in ``encoder.layer``; decoder LLMs (Llama, Mistral,
Qwen2, Phi-3) in ``layers``, followed by a final norm. torch and sentence_transformers are
imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from torch import nn

POOLING_MODES = ("mean", "cls", "lasttoken", "weightedmean")
# Where architectures keep their list of transformer blocks, relative to the Hugging Face base model.
LAYER_PATHS = ("encoder.layer", "layers", "model.layers", "decoder.layers", "model.decoder.layers",
               "encoder.layers", "transformer.h", "h")
# The norm a decoder applies after its last block (absent in post-LN encoders such as BERT).
FINAL_NORMS = ("norm", "final_norm", "final_layernorm", "ln_f", "final_layer_norm", "model.norm")


def load_model(name_or_path: str | Path | None, device: str | None = None) -> SentenceTransformer:
    """Load a local sentence-transformers (or plain Hugging Face) model; ``None`` is the packaged MiniLM.

    A plain Hugging Face directory gets mean pooling; a tokenizer without a padding token
    (most decoders) pads with its EOS token.
    """
    from sentence_transformers import SentenceTransformer

    from ranker.encoders import resolve_encoder

    model = SentenceTransformer(str(resolve_encoder(name_or_path)), device=device, local_files_only=True)
    tokenizer = model.tokenizer
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model


def transformer_module(model: SentenceTransformer) -> Any:
    """The model's first module, a sentence-transformers ``Transformer`` wrapping a Hugging Face model."""
    first = model[0]
    if not hasattr(first, "auto_model"):
        raise InputError(f"the model's first module is a {type(first).__name__}, not a Transformer")
    return first


def base_model(model: SentenceTransformer) -> nn.Module:
    """The Hugging Face model inside ``model`` (e.g. ``BertModel``, ``LlamaModel``)."""
    return transformer_module(model).auto_model


def find_layers(hf_model: nn.Module) -> tuple[nn.Module, str]:
    """``(parent, attribute)`` of the ``ModuleList`` holding the transformer blocks."""
    from torch import nn

    for path in LAYER_PATHS:
        parent, *rest = _walk(hf_model, path.split("."))
        if parent is not None and isinstance(getattr(parent, rest[0], None), nn.ModuleList):
            return parent, rest[0]
    raise InputError(f"cannot find the transformer layers of {type(hf_model).__name__} "
                     f"(looked for {', '.join(LAYER_PATHS)})")


def layer_list(hf_model: nn.Module) -> nn.ModuleList:
    """The ``ModuleList`` of transformer blocks."""
    parent, name = find_layers(hf_model)
    return getattr(parent, name)


def final_norm(hf_model: nn.Module) -> nn.Module | None:
    """The norm applied after the last block, or ``None`` (BERT-style encoders have none)."""
    from torch import nn

    for path in FINAL_NORMS:
        parent, *rest = _walk(hf_model, path.split("."))
        module = getattr(parent, rest[0], None) if parent is not None else None
        if isinstance(module, nn.Module) and not isinstance(module, nn.ModuleList):
            return module
    return None


def set_pooling(model: SentenceTransformer, mode: str) -> None:
    """Replace (or add) the Pooling module after the Transformer with ``mode`` pooling (``lasttoken``
    also makes the tokenizer append EOS: :func:`append_eos`)."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    if mode not in POOLING_MODES:
        raise InputError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {mode!r}")
    dim = transformer_module(model).get_embedding_dimension()
    pooling = Pooling(dim, pooling_mode=mode)
    if mode == "lasttoken" and model.tokenizer is not None:
        # the last token is then EOS, not the text's last word
        append_eos(model.tokenizer, base_model(model).get_input_embeddings().num_embeddings)
    names = list(model._modules)
    for name in names:
        if isinstance(model._modules[name], Pooling):
            model._modules[name] = pooling
            return
    # No pooling module: insert one right after the Transformer, keeping the others in order.
    modules = [model._modules[n] for n in names]
    model._modules.clear()
    for index, module in enumerate([modules[0], pooling, *modules[1:]]):
        model._modules[str(index)] = module


def append_eos(tokenizer: Any, vocab_size: int | None = None) -> bool:
    """Make ``tokenizer`` end every text with its EOS token, as last-token pooling expects (the EOS
    state summarises the text); returns whether texts now end with EOS.

    Decoder tokenizers (Llama, Mistral) usually add only BOS. Tokenizers with an ``add_eos_token``
    switch get it turned on (BOS kept as it was); other fast tokenizers get a post-processor
    template (``[BOS] $A EOS``), which is saved in ``tokenizer.json`` with the model. An EOS token
    outside the model's embeddings (``vocab_size``) is never added.
    """
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None or eos_id is None or (vocab_size is not None and eos_id >= vocab_size):
        return False
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id

    def ends_with_eos() -> bool:
        ids = tokenizer("a")["input_ids"]
        return len(ids) > 0 and ids[-1] == eos_id

    def starts_with_bos() -> bool:
        ids = tokenizer("a")["input_ids"]
        return bos_id is not None and len(ids) > 0 and ids[0] == bos_id

    if ends_with_eos():
        return True
    had_bos = starts_with_bos()
    if hasattr(tokenizer, "add_eos_token") and hasattr(tokenizer, "update_post_processor"):
        tokenizer.add_eos_token = True
        tokenizer.add_bos_token = had_bos
        tokenizer.update_post_processor()
        if ends_with_eos() and starts_with_bos() == had_bos:
            return True
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        return False
    from tokenizers.processors import TemplateProcessing

    prefix = f"{bos} " if had_bos else ""
    backend.post_processor = TemplateProcessing(
        single=f"{prefix}$A {eos}", pair=f"{prefix}$A {eos} $B:1 {eos}:1",
        special_tokens=[(eos, eos_id), *([(bos, bos_id)] if had_bos else [])])
    return ends_with_eos()


def pooling_mode(model: SentenceTransformer) -> str | None:
    """The pooling mode of the model's Pooling module, if it has one."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    for module in model:
        if isinstance(module, Pooling):
            mode = module.pooling_mode
            return mode if isinstance(mode, str) else "+".join(mode)
    return None


def _walk(root: Any, parts: list[str]) -> list[Any]:
    """``[parent_of_last, last_name]`` for a dotted path, or ``[None, last_name]`` if a step is missing."""
    node = root
    for part in parts[:-1]:
        node = getattr(node, part, None)
        if node is None:
            return [None, parts[-1]]
    return [node, parts[-1]]


MODEL_MARKER = "modules.json"


def save_model(model: SentenceTransformer, out: str | Path, force: bool = False,
               extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` to ``out`` atomically (a hidden sibling renamed at the end), with ``extra`` JSON files.

    An existing ``out`` is replaced only with ``force``, and only if it is a
    sentence-transformers model directory or empty.
    """
    import json

    from ranker.atomic import atomic_directory

    out = Path(out)
    with atomic_directory(out, force, marker=MODEL_MARKER, what="a model") as tmp:
        model.save(str(tmp))
        for name, payload in (extra or {}).items():
            (tmp / name).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return out


def check_out(out: str | Path, force: bool) -> None:
    """Fail early (before any work) if :func:`save_model` would refuse ``out``."""
    from ranker.atomic import check_target

    check_target(Path(out), force, marker=MODEL_MARKER, what="a model")
