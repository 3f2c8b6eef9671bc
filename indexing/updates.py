"""Live document updates, the writing side: add or replace a batch of documents, delete documents, compact.

    apply_updates(index, documents=[Document("d1", "Title", "Text"), ...], deletes=["d7"])
    compact(index)

A batch is one generation (the layout and how readers open it: :mod:`ranker.live`):

1. the batch is checked whole (:func:`check_documents`); nothing is written for a bad one;
2. under ``live/update.lock`` (one batch at a time, across processes) documents are encoded with the
   index's encoder (the one its vectors manifest records, checked by fingerprint) into a new delta shard,
   and the documents deleted or replaced get deletion markers;
3. Lucene gets the batch through its own ``IndexWriter`` (Anserini's analyzer and
   ``DefaultLuceneDocumentGenerator`` with the build's settings, so a document's fields, and the BM25
   statistics, are those a rebuild gives): ``updateDocument`` by ``id`` for add-or-replace,
   ``deleteDocuments`` for delete. No merges (``NoMergePolicy``): doc numbers stay put and new documents get
   the next ones, so the row maps of the generation extend the previous ones;
4. every file of the generation is written and fsynced, then Lucene commits with the generation in its
   commit data: that commit is the moment the batch becomes visible, and durable. ``live/current.json``
   follows, and the files of the previous generation that no reader can open any more are removed.

A failure before the commit (a full disk, a Lucene error, an encoder that fails) rolls Lucene back and
removes the generation's files: the index is as it was. Files a killed process left behind are removed
by the next batch (:func:`recover`).

``compact`` folds the updates back into a plain index (Lucene merged to one segment, one forward index,
fresh row maps), written beside the index and renamed over it, as ``ff-index build --force`` does. An ANN
index is dropped by compaction (its rows would no longer match); rebuild it with ``ff-index ann build``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.bm25 import raw_json
from indexing.corpus import Document
from ranker import live
from ranker.atomic import _fsync_directory, save_npy_atomic, staged_directory, write_json_atomic
from ranker.errors import InputError
from ranker.forward_index import MANIFEST, VECTORS_DIR, ForwardIndex
from ranker.index_layout import LUCENE_DIR, LUCENE_DOCNO_RANK, LUCENE_DOCNOS, LUCENE_ROWS, read_manifest
from ranker.row_map import docno_rank, read_row_map

FIELDS = ("docno", "title", "text")
ENCODED_TEXT = "title + newline + text"  # what a forward index built from text records (indexing.forward_build)
_GENERATION_FILE = re.compile(r"^(?:state|delta|deleted|lucene_docnos|lucene_docno_rank|lucene_rows)-(\d{6})")


class BatchError(InputError):
    """A batch that cannot be applied as given; ``field`` names the item and field (``documents[3].text``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownDocument(InputError):
    """A document to delete that the index does not hold."""


class UpdateFailed(RuntimeError):
    """An update that failed while it was being applied (a full disk, an I/O error); nothing was applied.
    ``disk_full`` says whether the disk ran out of space."""

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(frozen=True)
class UpdateResult:
    """What a batch did: the generation it made visible, documents added and replaced, deleted, and the
    index's live document count afterwards."""

    generation: int
    added: int
    replaced: int
    deleted: int
    documents: int


def check_documents(items: Sequence[Any], max_documents: int | None = None) -> list[Document]:
    """The batch as :class:`Document` objects, or a :class:`BatchError` naming the first bad item and field.

    Each item is an object with a non-empty string ``docno`` (no whitespace or NUL), an optional string
    ``title`` and a string ``text`` with something in it besides whitespace; nothing else. A docno may be
    in a batch once.
    """
    if not isinstance(items, (list, tuple)):
        raise BatchError("documents", "must be a list of documents")
    if not items:
        raise BatchError("documents", "is empty; send at least one document")
    if max_documents is not None and len(items) > max_documents:
        raise BatchError("documents", f"{len(items)} documents; a batch holds at most {max_documents}")
    first: dict[str, int] = {}
    docs = []
    for i, item in enumerate(items):
        where = f"documents[{i}]"
        if not isinstance(item, dict):
            raise BatchError(where, "must be an object with docno, title and text")
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            raise BatchError(f"{where}.{unknown[0]}", f"unknown field; a document has {', '.join(FIELDS)}")
        docno = item.get("docno")
        check_docno(docno, f"{where}.docno")
        for name in ("title", "text"):
            if name in item and not isinstance(item[name], str):
                raise BatchError(f"{where}.{name}", f"must be a string, got {type(item[name]).__name__}")
        text = item.get("text")
        if text is None or not text.strip():
            raise BatchError(f"{where}.text", "is missing or empty; a document needs text")
        if docno in first:
            raise BatchError(f"{where}.docno", f"duplicate docno {docno!r} (also documents[{first[docno]}])")
        first[docno] = i
        docs.append(Document(docno, item.get("title") or "", text))
    return docs


def check_docno(docno: Any, field: str = "docno") -> str:
    """``docno`` if it is a usable document ID (a non-empty string without whitespace or NUL)."""
    if not isinstance(docno, str):
        raise BatchError(field, f"must be a string, got {type(docno).__name__}")
    if not docno or any(c.isspace() for c in docno) or "\x00" in docno:
        raise BatchError(field, f"{docno!r} is empty or contains whitespace or NUL")
    return docno


def read_documents(path: Path) -> list[Document]:
    """The documents of a file for ``ff-index add``: JSONL with ``docno``, ``title``, ``text`` (the HTTP
    body's documents, one a line), or any corpus :func:`indexing.corpus.read_corpus` reads; checked as one
    batch, a mistake names the file and line."""
    from indexing.corpus import read_corpus
    from ranker.textio import json_object, numbered_lines

    items, lines = [], []
    if path.is_file() and path.suffix == ".jsonl":
        for line_no, line in numbered_lines(path):
            if line.strip():
                record = json_object(str(path), line_no, line)
                if not items and "docno" not in record:  # another corpus format
                    break
                items.append(record)
                lines.append(line_no)
    if not items:
        docs = list(read_corpus(path))
        items = [{"docno": d.docno, "title": d.title, "text": d.text} for d in docs]
    try:
        return check_documents(items)
    except BatchError as err:
        at = re.match(r"documents\[(\d+)\]", err.field)
        where = f"{path}:{lines[int(at.group(1))]}" if at and lines else str(path)
        raise InputError(f"{where}: {err}") from None


def apply_updates(index_dir: str | Path, documents: Sequence[Document] = (), deletes: Sequence[str] = (),
                  encoder: Any = None) -> UpdateResult:
    """Add or replace ``documents`` and delete ``deletes`` (docnos the index must hold) as one generation.

    Returns when the batch is durable (fsynced and committed). ``encoder``: a loaded sentence-transformers
    model to encode with (default: the index's encoder, loaded once per process). Raises
    :class:`UnknownDocument` for a docno to delete that the index does not hold, :class:`BatchError` for a
    docno both added and deleted, :class:`UpdateFailed` when writing fails; the index is then unchanged.
    """
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    deletes = [check_docno(d, f"deletes[{i}]") for i, d in enumerate(deletes)]
    both = sorted({d.docno for d in documents} & set(deletes))
    if both:
        raise BatchError("deletes", f"document {both[0]!r} is both added and deleted in one batch")
    if not documents and not deletes:
        raise BatchError("documents", "nothing to add or delete")
    with update_lock(index_dir):
        committed = recover(index_dir)
        return _Batch(index_dir, manifest, committed, encoder).apply(list(documents), list(dict.fromkeys(deletes)))


@contextlib.contextmanager
def update_lock(index_dir: Path) -> Iterator[None]:
    """Hold ``live/update.lock`` exclusively: one batch or compaction at a time. If the index directory was
    replaced (compacted) while waiting, lock the new one."""
    while True:
        directory = live.live_dir(index_dir)
        directory.mkdir(exist_ok=True)
        path = directory / live.UPDATE_LOCK
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return


def recover(index_dir: Path) -> int:
    """The committed generation (the latest Lucene commit's); removes files of other generations that no
    reader can open (a killed batch's, or older ones) and brings ``live/current.json`` up to date.
    Call under :func:`update_lock`."""
    committed = lucene_generation(index_dir)
    state = live.read_state(index_dir, committed)
    keep = set(state.deltas) if state is not None else set()
    directory = live.live_dir(index_dir)
    with live.flocked(index_dir, live.READ_LOCK, exclusive=True):
        for path in directory.iterdir():
            match = _GENERATION_FILE.match(path.name)
            if match is None or path.name in keep or int(match.group(1)) == committed:
                if path.name.startswith(".") and ".partial" in path.name:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if live.current_generation(index_dir) != committed:
            write_json_atomic(directory / live.CURRENT, {"generation": committed})
    return committed


def lucene_generation(index_dir: Path) -> int:
    """The generation the latest Lucene commit names."""
    from ranker.java import autoclass

    reader = _open_reader(autoclass, index_dir / LUCENE_DIR)
    try:
        return live.commit_generation(reader)
    finally:
        reader.close()


def _open_reader(autoclass: Any, lucene_dir: Path) -> Any:
    directory = autoclass("org.apache.lucene.store.FSDirectory").open(
        autoclass("java.nio.file.Paths").get(str(lucene_dir)))
    return autoclass("org.apache.lucene.index.DirectoryReader").open(directory)


class _Batch:
    """One generation being written (see the module docstring for the steps)."""

    def __init__(self, index_dir: Path, manifest: dict[str, Any], committed: int, encoder: Any) -> None:
        self.index_dir, self.manifest, self.previous = index_dir, manifest, committed
        self.generation = committed + 1
        self.state = live.read_state(index_dir, committed)
        self.directory = live.live_dir(index_dir)
        self.vectors = "vectors" in manifest
        self.encoder = encoder
        self.written: list[Path] = []

    def apply(self, documents: list[Document], deletes: list[str]) -> UpdateResult:
        from ranker.java import start_jvm

        start_jvm()
        from jnius import JavaException

        forward = live.open_live_forward(self.index_dir, self.state) if self.vectors else None
        if forward is not None and documents:
            _check_encodable(forward, self.index_dir)
        writer = None
        try:
            dead = None
            writer, lucene = _LuceneWriter.open(self.index_dir / LUCENE_DIR)
            present = lucene.count_present([d.docno for d in documents] + deletes)
            missing = [d for d in deletes if not present[d]]
            if missing:
                raise UnknownDocument(f"document {missing[0]!r} is not in the index; nothing was changed")
            replaced = sum(present[d.docno] for d in documents)
            old_maps = self._old_row_map(forward)
            delta = self._write_delta(documents, forward) if forward is not None and documents else None
            if forward is not None:
                gone = forward.lookup([d.docno for d in documents] + deletes)
                dead = np.union1d(getattr(forward, "deleted", np.zeros(0, dtype=np.int64)),
                                  gone.doc[gone.found]).astype(np.int64)
                self._save(live.generation_file("deleted", self.generation), dead.astype(np.int64))
            for doc in documents:
                writer.upsert(doc)
            for docno in deletes:
                writer.delete(docno)
            new_ids, renumbered, documents_now, max_doc = writer.new_documents(old_maps[0] if old_maps else None)
            if renumbered:
                old_maps = None
            state = self._write_maps(old_maps, new_ids, max_doc, documents_now, forward, delta, dead)
            with live.flocked(self.index_dir, live.READ_LOCK, exclusive=True):
                writer.commit(self.generation)
                writer = None
                self._publish(state)
        except (OSError, JavaException) as err:
            self._abandon(writer)
            disk_full = _is_disk_full(err)
            reason = "the disk is full" if disk_full else f"{type(err).__name__}: {_first_line(err)}"
            raise UpdateFailed(f"{self.index_dir}: the update was not applied ({reason}); the index is unchanged",
                               disk_full=disk_full) from err
        except BaseException:
            self._abandon(writer)
            raise
        return UpdateResult(self.generation, len(documents) - replaced, replaced, len(deletes), documents_now)

    def _abandon(self, writer: _LuceneWriter | None) -> None:
        """Roll Lucene back and remove what this generation wrote."""
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.rollback()
        for path in self.written:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _old_row_map(self, forward: ForwardIndex | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """The previous generation's row maps (``None``: an index without ``lucene_docnos.npy``)."""
        if self.state is not None:
            return live.row_map_arrays(self.index_dir, self.state)
        if not (self.index_dir / LUCENE_DOCNOS).is_file():
            return None
        if forward is not None:
            maps = read_row_map(self.index_dir, forward)
            assert maps is not None
            return maps.docnos, maps.docno_rank, maps.rows
        docnos = np.load(self.index_dir / LUCENE_DOCNOS, mmap_mode="r", allow_pickle=False)
        rank_file = self.index_dir / LUCENE_DOCNO_RANK
        rank = np.load(rank_file, mmap_mode="r") if rank_file.is_file() else docno_rank(docnos)
        return docnos, rank, None

    def _write_delta(self, documents: list[Document], forward: ForwardIndex) -> ForwardIndex:
        """Encode the batch into ``live/delta-NNNNNN`` (fsynced) and open it."""
        from indexing.forward_build import make_shard, prepare_shard, encode_shard
        from indexing.forward_writer import WRITER_KEYS, write_forward_index

        settings, model = _encoder_for(forward, self.encoder)
        shard = make_shard(0, documents, settings)
        vectors = encode_shard(model, prepare_shard(model, shard, 64), None)
        name = live.generation_file("delta", self.generation, suffix="")
        target = self.directory / name
        self.written.append(target)
        meta = {key: value for key, value in forward.base.manifest.items() if key not in WRITER_KEYS} \
            if hasattr(forward, "base") else {key: value for key, value in forward.manifest.items()
                                              if key not in WRITER_KEYS}
        meta["updates"] = {"generation": self.generation}
        with staged_directory(target, create=False) as tmp:
            write_forward_index(tmp, shard.docnos, shard.counts, [vectors], dim=forward.dim,
                                dtype=_delta_dtype(forward), similarity=forward.manifest["similarity"], meta=meta)
            for file in tmp.iterdir():
                _fsync(file)
            _fsync_directory(tmp)
        return ForwardIndex.open(target)

    def _write_maps(self, old: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None, new_ids: list[str],
                    max_doc: int, documents: int, forward: ForwardIndex | None,
                    delta: ForwardIndex | None, dead: np.ndarray | None) -> live.LiveState:
        """The generation's row maps and state file (all fsynced). ``old``: the previous maps, which the
        ``new_ids`` extend; ``None``: ``new_ids`` are every doc number's, and the rows are looked up afresh."""
        g = self.generation
        if old is None and forward is not None:  # every Lucene document's row in the new live forward index
            base = getattr(forward, "base", forward)
            deltas = [*getattr(forward, "shards", [])[len(getattr(base, "shards", [base])):], *([delta] if delta else [])]
            after = live.LiveForwardIndex(base.path, base, deltas, dead if dead is not None else np.zeros(0, np.int64))
            rows = np.asarray(after.lookup(new_ids).doc, dtype=np.int32)
            old = (np.zeros(0, dtype="S1"), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32))
            new_ids, delta_rows = new_ids, rows
        else:
            delta_rows = None
        old_docnos = np.asarray(old[0]) if old is not None else np.zeros(0, dtype="S1")
        added = np.array([i.encode("utf-8") for i in new_ids], dtype=f"S{max((len(i.encode()) for i in new_ids), default=1)}")
        width = max(old_docnos.dtype.itemsize, added.dtype.itemsize)
        docnos = np.concatenate([old_docnos.astype(f"S{width}"), added.astype(f"S{width}")])
        assert len(docnos) == max_doc, (len(docnos), max_doc)
        names = {"docnos": live.generation_file("lucene_docnos", g), "rank": live.generation_file("lucene_docno_rank", g)}
        self._save(names["docnos"], docnos)
        self._save(names["rank"], docno_rank(docnos))
        rows_name = None
        deltas = tuple(self.state.deltas) if self.state is not None else ()
        if forward is not None:
            assert old is not None and old[2] is not None
            first = forward.num_docs  # the new delta's documents come after every older document
            position = {} if delta is None else {docno: first + i for i, docno in
                                                  enumerate(_decoded(delta.doc_ids))}
            new_rows = (delta_rows if delta_rows is not None
                        else np.array([position.get(i, -1) for i in new_ids], dtype=np.int32))
            rows_name = live.generation_file("lucene_rows", g)
            self._save(rows_name, np.concatenate([np.asarray(old[2], dtype=np.int32), new_rows]))
            if delta is not None:
                deltas = (*deltas, live.generation_file("delta", g, suffix=""))
        deleted = live.generation_file("deleted", g) if forward is not None else None
        state = live.LiveState(g, documents, max_doc, deltas, deleted, names["docnos"], names["rank"], rows_name)
        file = self.directory / live.state_name(g)
        self.written.append(file)
        write_json_atomic(file, state.to_json())
        return state

    def _save(self, name: str, array: np.ndarray) -> None:
        file = self.directory / name
        self.written.append(file)
        save_npy_atomic(file, array)

    def _publish(self, state: live.LiveState) -> None:
        """After the commit (under the exclusive read lock): the hint, and the previous generation's files go."""
        self.written = []  # committed: nothing to abandon any more
        with contextlib.suppress(OSError):  # the batch is committed; a stale hint is fixed by the next batch
            write_json_atomic(self.directory / live.CURRENT, {"generation": state.generation})
            if self.state is not None:
                old = self.state
                for name in (live.state_name(old.generation), old.deleted, old.docnos, old.docno_rank, old.rows):
                    if name:
                        with contextlib.suppress(FileNotFoundError):
                            (self.directory / name).unlink()


class _LuceneWriter:
    """Anserini's document generator and analyzer over Lucene's ``IndexWriter`` (append, no merges)."""

    BUILD_ARGS = ["-input", "", "-collection", "JsonCollection", "-storePositions", "-storeDocvectors", "-storeRaw"]

    def __init__(self, writer: Any, generator: Any, autoclass: Any, old_leaves: list[tuple[str, int]]) -> None:
        self.writer, self.generator, self.old_leaves = writer, generator, old_leaves
        self._term = autoclass("org.apache.lucene.index.Term")
        self._document = autoclass("io.anserini.collection.JsonCollection$Document")
        self._autoclass = autoclass

    @classmethod
    def open(cls, lucene_dir: Path, merge: bool = False) -> tuple[_LuceneWriter, _LuceneReaderView]:
        """A writer on ``lucene_dir`` (without merges unless ``merge``) and a view of its documents now."""
        from ranker.java import autoclass

        args = autoclass("io.anserini.index.IndexCollection$Args")()
        argv = autoclass("java.util.ArrayList")()
        for arg in [*cls.BUILD_ARGS[:2], "-index", str(lucene_dir), *cls.BUILD_ARGS[2:]]:
            argv.add(arg)
        autoclass("org.kohsuke.args4j.CmdLineParser")(args).parseArgument(argv)
        generator = autoclass("io.anserini.index.generator.DefaultLuceneDocumentGenerator")(args)
        analyzer = autoclass("io.anserini.analysis.DefaultEnglishAnalyzer").fromArguments(
            args.stemmer, args.keepStopwords, args.stopwords)
        config = autoclass("org.apache.lucene.index.IndexWriterConfig")(analyzer)
        config.setOpenMode(autoclass("org.apache.lucene.index.IndexWriterConfig$OpenMode").APPEND)
        config.setUseCompoundFile(False)
        config.setCommitOnClose(False)
        config.setRAMBufferSizeMB(2048.0)
        if not merge:
            config.setMergePolicy(autoclass("org.apache.lucene.index.NoMergePolicy").INSTANCE)
        directory = autoclass("org.apache.lucene.store.FSDirectory").open(
            autoclass("java.nio.file.Paths").get(str(lucene_dir)))
        writer = autoclass("org.apache.lucene.index.IndexWriter")(directory, config)
        try:
            view = _LuceneReaderView(autoclass, autoclass("org.apache.lucene.index.DirectoryReader").open(writer))
        except BaseException:
            writer.rollback()
            raise
        return cls(writer, generator, autoclass, view.leaves()), view

    def upsert(self, doc: Document) -> None:
        """Add ``doc``, replacing any document with its id."""
        lucene_doc = self.generator.createDocument(self._document.fromString(raw_json(doc)))
        self.writer.updateDocument(self._term("id", doc.docno), lucene_doc)

    def delete(self, docno: str) -> None:
        """Delete the document with id ``docno``."""
        query = self._autoclass("org.apache.lucene.search.TermQuery")(self._term("id", docno))
        self.writer.deleteDocuments(query)

    def new_documents(self, old_docnos: np.ndarray | None) -> tuple[list[str], bool, int, int]:
        """After the batch: the ids of the doc numbers added after the old ones (or of every doc number, and
        ``True``, if the old ones moved: Lucene drops a segment whose documents are all deleted), the live
        documents and the doc-number count."""
        view = _LuceneReaderView(self._autoclass,
                                 self._autoclass("org.apache.lucene.index.DirectoryReader").open(self.writer))
        try:
            leaves = view.leaves()
            old_max = sum(n for _, n in self.old_leaves)
            kept = leaves[:len(self.old_leaves)] == self.old_leaves
            if old_docnos is None or not kept or len(old_docnos) != old_max:  # a fully deleted segment went
                return view.ids(0, view.max_doc()), True, view.num_docs(), view.max_doc()
            return view.ids(old_max, view.max_doc()), False, view.num_docs(), view.max_doc()
        finally:
            view.close()

    def commit(self, generation: int | None) -> None:
        """Commit (with ``generation`` in the commit data; ``None``: no generation) and close."""
        data = self._autoclass("java.util.HashMap")()
        if generation is not None:
            data.put(live.GENERATION_KEY, str(generation))
        self.writer.setLiveCommitData(data.entrySet())
        self.writer.commit()
        self.writer.close()

    def force_merge(self) -> None:
        """Merge every segment into one (compaction)."""
        self.writer.forceMerge(1)

    def rollback(self) -> None:
        """Drop everything since the last commit and close."""
        self.writer.rollback()


class _LuceneReaderView:
    """What a batch asks a reader: which docnos are present, the segments, the ids of new doc numbers."""

    def __init__(self, autoclass: Any, reader: Any) -> None:
        from ranker.java import cast

        self.reader = reader
        self._cast = cast
        self._searcher = autoclass("org.apache.lucene.search.IndexSearcher")(
            cast("org.apache.lucene.index.IndexReader", reader))
        self._term_query = autoclass("org.apache.lucene.search.TermQuery")
        self._term = autoclass("org.apache.lucene.index.Term")

    def count_present(self, docnos: list[str]) -> dict[str, bool]:
        """Whether each docno is a live document, then closes the view."""
        try:
            return {d: self._searcher.count(self._term_query(self._term("id", d))) > 0 for d in docnos}
        finally:
            self.close()

    def leaves(self) -> list[tuple[str, int]]:
        """(segment name, doc-number count) of each segment, in doc-number order."""
        out = []
        for leaf in self.reader.leaves().toArray():
            context = self._cast("org.apache.lucene.index.LeafReaderContext", leaf)
            segment = self._cast("org.apache.lucene.index.SegmentReader", context.reader())
            out.append((str(segment.getSegmentName()), int(segment.maxDoc())))
        return out

    def ids(self, lo: int, hi: int) -> list[str]:
        """The ``id`` of doc numbers ``lo .. hi - 1``."""
        fields = self.reader.storedFields()
        return [fields.document(i).get("id") for i in range(lo, hi)]

    def num_docs(self) -> int:
        return int(self.reader.numDocs())

    def max_doc(self) -> int:
        return int(self.reader.maxDoc())

    def close(self) -> None:
        self.reader.close()


_MODELS: dict[tuple[str, str, int | None], Any] = {}


def _encoder_for(forward: ForwardIndex, model: Any) -> tuple[Any, Any]:
    """The encoding settings of the index's vectors and the model (loaded once per process)."""
    from indexing.forward_build import EncodeSettings, load_model
    from ranker.encoders import encoder_fingerprint, resolve_encoder

    recorded = forward.manifest["encoder"]
    passages = forward.manifest.get("passages") or {}
    path = resolve_encoder(recorded["name"])
    settings = EncodeSettings(encoder=recorded["name"], encoder_path=str(path), fingerprint=recorded["fingerprint"],
                              corpus_checksum="", passage_words=passages.get("words"), stride=passages.get("stride"),
                              max_seq_length=recorded.get("max_seq_length"), dtype=_delta_dtype(forward))
    if model is None:
        key = (str(path), recorded["fingerprint"], settings.max_seq_length)
        if key not in _MODELS:
            if encoder_fingerprint(path) != recorded["fingerprint"]:
                raise InputError(f"{path}: this encoder is not the one that built the vectors ({recorded['name']}); "
                                 "new documents would not match them")
            _MODELS[key] = load_model(settings)
        model = _MODELS[key]
    return settings, model


def _check_encodable(forward: ForwardIndex, index_dir: Path) -> None:
    """Refuse vectors the index cannot compute for new documents the way it computed the others."""
    manifest = getattr(forward, "base", forward).manifest
    if manifest.get("text") != ENCODED_TEXT:
        raise InputError(f"{index_dir}: its vectors were not encoded from the documents' text "
                         f"({manifest.get('text')!r}); documents cannot be added")
    if forward.kind not in ("float32", "float16"):
        raise InputError(f"{index_dir}: its vectors are {forward.kind}-quantised; live updates need float vectors")


def _decoded(ids: np.ndarray) -> list[str]:
    """Fixed-width UTF-8 IDs as strings."""
    return [value.decode("utf-8") for value in np.asarray(ids).tolist()]


def _delta_dtype(forward: ForwardIndex) -> str:
    return forward.kind if forward.kind in ("float32", "float16") else "float32"


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left on device" in str(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def delete_documents(index_dir: str | Path, docnos: Sequence[str]) -> UpdateResult:
    """Delete ``docnos`` (each must be in the index) as one generation."""
    return apply_updates(index_dir, deletes=docnos)


def compact(index_dir: str | Path) -> dict[str, Any] | None:
    """Fold the live updates into a plain index, atomically; ``None`` if there were none. Returns the new
    manifest. The ANN index, if any, is dropped (rebuild it with ``ff-index ann build``)."""
    from indexing.build import library_versions
    from indexing.forward_writer import WRITER_KEYS, write_forward_index
    from ranker.row_map import write_docno_rank, write_row_map
    from ranker.sparse import lucene_docnos

    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    with update_lock(index_dir):
        committed = recover(index_dir)
        state = live.read_state(index_dir, committed)
        if state is None:
            return None
        skip = {LUCENE_DIR, VECTORS_DIR, live.LIVE_DIR, "ann", MANIFEST, LUCENE_DOCNOS, LUCENE_DOCNO_RANK, LUCENE_ROWS}
        with staged_directory(index_dir) as tmp:
            for path in index_dir.iterdir():  # tuning.json, the query-encoder record, ...
                if path.name not in skip and not path.name.startswith("."):
                    (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp / path.name)
            shutil.copytree(index_dir / LUCENE_DIR, tmp / LUCENE_DIR, ignore=shutil.ignore_patterns("write.lock"))
            writer, view = _LuceneWriter.open(tmp / LUCENE_DIR, merge=True)
            view.close()
            writer.force_merge()
            writer.commit(None)
            np.save(tmp / LUCENE_DOCNOS, lucene_docnos(tmp / LUCENE_DIR), allow_pickle=False)
            out = dict(manifest)
            out["bm25"] = {**manifest["bm25"], "documents": state.documents}
            out["compacted"] = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                "generation": committed, "versions": library_versions()}
            if "vectors" in manifest:
                forward = live.open_live_forward(index_dir, state)
                dead_docs = getattr(forward, "dead_docs", np.zeros(forward.num_docs, dtype=bool))
                dead_rows = getattr(forward, "dead_rows", None)
                keep = np.flatnonzero(~dead_docs)
                ids = _decoded(np.asarray(forward.doc_ids)[keep])
                offsets = np.asarray(forward.doc_offsets)
                counts = (offsets[keep + 1] - offsets[keep]).tolist()
                rows = np.flatnonzero(~dead_rows) if dead_rows is not None else np.arange(forward.num_vectors)
                chunks = (np.asarray(forward.vectors[rows[lo:lo + 16_384]]) for lo in range(0, len(rows), 16_384))
                base = getattr(forward, "base", forward).manifest
                meta = {key: value for key, value in base.items() if key not in WRITER_KEYS}
                vectors = write_forward_index(tmp / VECTORS_DIR, ids, counts, chunks, dim=forward.dim,
                                              dtype=_delta_dtype(forward), similarity=base["similarity"], meta=meta)
                out["vectors"] = {**manifest["vectors"], **{key: vectors[key] for key in
                                                            ("dim", "dtype", "similarity", "documents", "vectors")}}
            out.pop("row_map", None)
            (tmp / MANIFEST).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
            write_docno_rank(tmp)
            write_row_map(tmp)
            for file in tmp.rglob("*"):
                if file.is_file():
                    _fsync(file)
    return read_manifest(index_dir)
