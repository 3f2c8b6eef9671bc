"""``ff-train adapt``: a pruned query encoder adapted to an index's own collection, without labels.

The index's encoder (the model that built its vectors, as its manifest records it), or ``model``,
is cut to its first ``keep`` layers (:mod:`training.pruning`) and distilled from the index's
encoder (:func:`training.distill.distill`) on texts of the index's own collection: the documents
Lucene stores in the index, and query-like texts made from them (each document's title and first
sentences, :func:`training.distill.query_like`). No queries and no relevance judgements are needed:
the index alone is enough. The documents of a fixed-seed share ``held_out`` are kept out of
training; training stops early on the distillation loss over their texts and keeps the weights
where it was lowest. The student records the index encoder's fingerprint, so it is accepted as
the index's query encoder; ``install`` records it there (:func:`ranker.query_encoder.write_query_encoder`,
what ``ff-index query-encoder`` runs).

A second run with the same settings reads the teacher's embeddings from the cache
(``<out>.teacher-cache``); the model directory appears whole at the end, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ranker.errors import InputError
from training.distill import DistillConfig, held_out_positions, query_like

SOURCES = ("both", "query-like", "documents")  # which texts of the collection the student learns from
PRUNING_FILE = "ff_pruning.json"


@dataclass(kw_only=True)
class AdaptConfig(DistillConfig):
    """Everything one adaptation run depends on (saved with the model in ``ff_distillation.json``).

    ``model``: the encoder to prune (None: the index's encoder); ``texts`` and ``teacher`` are filled in
    from the index (its path, its encoder).
    """

    index: str
    keep: int
    texts: str = ""
    query_splits: tuple[str, ...] = ()
    sources: str = "query-like"
    sentences: int = 3
    held_out: float = 0.1
    init_projection: bool = True
    max_seq_length: int | None = 64  # query-like texts and queries are short; also what the saved encoder keeps
    epochs: float = 7.0
    batch_size: int = 64
    learning_rate: float = 1e-3
    install: bool = False

    batch_size_reason: ClassVar[str] = ""

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option (the layer count is checked once loaded)."""
        if self.keep < 1:
            raise InputError(f"--keep {self.keep}: an encoder cannot be pruned to {self.keep} layers "
                             "(keep at least 1)")
        if self.sources not in SOURCES:
            raise InputError(f"--texts must be one of {', '.join(SOURCES)}, got {self.sources!r}")
        if self.sentences < 0:
            raise InputError(f"--sentences must be at least 0, got {self.sentences}")
        if not 0 < self.held_out < 1:
            raise InputError(f"--held-out must lie strictly between 0 and 1, got {self.held_out}")
        super().validate()


def index_encoder(index: str | Path) -> tuple[Path, dict[str, Any]]:
    """The directory of the encoder that built ``index``'s vectors, and the encoder record of its manifest;
    an :class:`InputError` for an index without vectors or whose encoder changed since."""
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from ranker.forward_index import ForwardIndex
    from ranker.index_layout import read_manifest

    index = Path(index)
    if "vectors" not in read_manifest(index):
        raise InputError(f"--index {index}: has no vectors (built with --no-vectors); adapt distils the encoder "
                         "that built them")
    recorded = ForwardIndex.open(index).manifest["encoder"]
    model_dir = resolve_encoder(recorded["name"])
    if encoder_fingerprint(model_dir) != recorded["fingerprint"]:
        raise InputError(f"--index {index}: its encoder {recorded['name']} changed since the index was built")
    return model_dir, recorded


def collection_texts(documents: list[tuple[str, str]], sources: str = "query-like", sentences: int = 3,
                     held_out: float = 0.1, seed: int = 42) -> tuple[list[str], list[str]]:
    """``(train, held_out)`` texts from ``(docno, contents)`` documents.

    ``sources``: whole documents, query-like texts (title and first ``sentences`` sentences), or both.
    A fixed-seed share ``held_out`` of the documents gives the held-out texts, so no document has texts
    on both sides; a text that also occurs in a training document stays in training only. Blank and
    repeated texts are dropped (first kept).
    """
    if len(documents) < 2:
        raise InputError(f"the index holds {len(documents)} document(s) with text; adapt needs at least 2 "
                         "(some are held out)")
    order = sorted(range(len(documents)), key=lambda i: documents[i][0])  # by docno: independent of Lucene's order
    chosen = {order[i] for i in held_out_positions(len(documents), held_out, seed)}

    def texts_of(contents: str) -> list[str]:
        out = [contents] if sources in ("both", "documents") else []
        if sources in ("both", "query-like"):
            out += query_like(contents, sentences)
        return out

    train = [t for i, (_, c) in enumerate(documents) if i not in chosen for t in texts_of(c)]
    train = list(dict.fromkeys(t for t in train if t.strip()))
    seen = set(train)
    held = [t for i, (_, c) in enumerate(documents) if i in chosen for t in texts_of(c)]
    held = list(dict.fromkeys(t for t in held if t.strip() and t not in seen))
    if not train or not held:
        raise InputError("the index's documents give no texts on one side of the held-out split; "
                         "use --texts both or documents, or another --held-out")
    return train, held


def adapt(config: AdaptConfig) -> dict[str, Any]:
    """Prune, distil on the index's collection and save (and with ``install`` record) as ``config`` says.

    Every option and the index are checked before any work. Returns the distillation summary with
    ``layers_before``, ``layers`` and ``installed``.
    """
    import dataclasses

    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from training.distill import distill
    from training.models import check_out, load_model, pooling_mode
    from training.pruning import num_layers, prune_layers

    config.validate()
    check_out(config.out, config.force)
    teacher_dir, _ = index_encoder(config.index)
    source = resolve_encoder(config.model) if config.model else teacher_dir
    student = load_model(source, device=config.device)
    total = num_layers(student)
    if config.keep >= total:
        raise InputError(f"--keep {config.keep}: {source} has {total} layers; it cannot be pruned to "
                         f"{config.keep} layers (keep 1 to {total - 1})")
    prune_layers(student, config.keep)
    documents = index_documents(config.index, config.progress)
    train, held = collection_texts(documents, config.sources, config.sentences, config.held_out, config.seed)
    print(f"{config.index}: {len(documents):,} documents -> {len(train):,} training and {len(held):,} held-out "
          f"texts ({config.sources})")
    config = dataclasses.replace(config, texts=str(config.index), teacher=str(teacher_dir))
    pruning = {"source": str(source), "source_fingerprint": encoder_fingerprint(source), "layers_before": total,
               "method": "keep", "layers": config.keep, "pooling": pooling_mode(student)}
    summary = distill(config, texts=train, held_out=held, student=student, extra={PRUNING_FILE: pruning})
    summary.update(layers_before=total, layers=config.keep, documents=len(documents), installed=None)
    if config.install:
        from ranker.query_encoder import write_query_encoder

        summary["installed"] = write_query_encoder(config.index, config.out)
    return summary


def index_documents(index: str | Path, progress: bool = True) -> list[tuple[str, str]]:
    """``(docno, contents)`` of the documents with text that ``index``'s Lucene index stores (what its
    vectors were encoded from), with a progress bar."""
    from tqdm import tqdm

    from ranker.sparse import stored_documents

    found = tqdm(stored_documents(index), desc="documents", unit=" docs", disable=not progress)
    return [(docno, contents) for docno, contents in found if contents.strip()]
