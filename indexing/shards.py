"""``ff-index shards``: build and maintain sharded forward indexes (the format: :mod:`ranker.sharded`).

    ff-index shards create --out DIR SHARD [SHARD ...]   # a sharded forward index holding the shards
    ff-index shards add --index DIR SHARD [SHARD ...]    # adding documents = adding a shard
    ff-index shards merge --index DIR --out OUT          # one plain forward index with every document
    ff-index shards verify --index DIR                   # every shard's checksums

A SHARD is a forward-index directory, an index directory holding ``vectors/``,
or a sharded forward index (each of its shards is taken). Shards are copied
into ``DIR/shards/NNNNN/`` (their checksums checked on the way), so DIR is
self-contained and can be moved as a whole; ``--link`` hard-links the files
instead (no extra disk; copies across filesystems) and ``--move`` also removes
the sources once the command has succeeded. DIR and OUT may be index
directories: their ``vectors/`` is meant (so ``ff-rank``/``ff-serve`` use the
sharded index unchanged), and the index manifest's ``vectors`` summary is
updated. ``create`` and ``merge`` build in a temporary directory renamed into
place; ``add`` places the new shard first and then replaces the manifest
atomically, so readers see either the old or the new set of shards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ranker.atomic import remove_stale_partials, staged_directory, write_json_atomic
from ranker.row_map import write_row_map
from ranker.errors import InputError
from ranker.forward_index import MANIFEST, SHARDED_KIND, VECTORS_DIR, ForwardIndex, quantization_of
from ranker.index_layout import FORMAT, load_manifest, read_manifest

COPY_BLOCK = 8 << 20
LOCK = ".shards.lock"


@dataclass(frozen=True)
class Source:
    """One shard to take in: the path the user named (``--move`` removes it) and the opened forward index."""

    given: Path
    index: ForwardIndex


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def is_index_root(path: Path) -> bool:
    """Whether ``path`` is an index directory (its manifest is an ``ff-index`` manifest)."""
    try:
        manifest = load_manifest(Path(path) / MANIFEST, what="an index")
    except InputError:
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def forward_dir(path: str | Path) -> Path:
    """The forward-index directory meant by ``path``: ``path/vectors`` for an index directory, else ``path``."""
    path = Path(path)
    return path / VECTORS_DIR if is_index_root(path) else path


def resolve_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Open every SHARD argument; a sharded index contributes each of its shards."""
    sources: list[Source] = []
    for given in paths:
        path = forward_dir(given)
        if not (path / MANIFEST).is_file():
            raise InputError(f"{given}: not a forward index (no {MANIFEST}, and no {VECTORS_DIR}/{MANIFEST})")
        index = ForwardIndex.open(path)
        shards = getattr(index, "shards", [index])
        sources.extend(Source(path, shard) for shard in shards)
    seen: dict[Path, Path] = {}
    for source in sources:
        where = source.index.path.resolve()
        if where in seen:
            raise InputError(f"{source.index.path}: the same shard is given twice")
        seen[where] = source.given
    return sources


def check_shards(reference: dict[str, Any], what: str, shards: Sequence[ForwardIndex]) -> None:
    """Refuse shards that differ from ``reference`` (dim, similarity, quantisation, encoder) or share an ID."""
    from ranker.sharded import check_compatible, duplicate_id

    for shard in shards:
        check_compatible(reference, shard.manifest, shard.path, what)
    dup = duplicate_id(shards)
    if dup is not None:
        docno, first, second = dup
        raise InputError(f"{shards[second].path}: document {docno!r} is also in {shards[first].path}; "
                         "a document ID may be in one shard only")


def place_shard(source: ForwardIndex, dst: Path, link: bool = False) -> None:
    """Put ``source``'s files (those its manifest lists, and the manifest) into the new directory ``dst``.

    Copies are checked against the manifest's checksums while they are written;
    ``link`` makes hard links instead where the filesystem allows.
    """
    dst.mkdir(parents=True)
    files = source.manifest["files"]
    for name in [*sorted(files), MANIFEST]:
        src = source.path / name
        if link:
            try:
                os.link(src, dst / name)
                continue
            except OSError:
                pass  # another filesystem (or no hard links): copy
        digest = _copy_hashed(src, dst / name)
        if name != MANIFEST and digest != files[name]["sha256"]:
            raise InputError(f"{src}: checksum does not match its manifest (the shard is damaged)")


def _copy_hashed(src: Path, dst: Path) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(COPY_BLOCK):
            digest.update(block)
            fout.write(block)
    shutil.copystat(src, dst)
    return f"sha256:{digest.hexdigest()}"


def shard_entry(rel: str, shard_dir: Path, source: Source) -> dict[str, Any]:
    """The manifest entry of a shard placed at ``shard_dir`` (``rel`` inside the sharded directory)."""
    from ranker.sharded import file_sha256

    return {"path": rel, "documents": source.index.num_docs, "vectors": source.index.num_vectors,
            "manifest_sha256": file_sha256(shard_dir / MANIFEST), "source": str(source.index.path.resolve()),
            "added": _now()}


def compose_manifest(shards: Sequence[ForwardIndex], entries: list[dict[str, Any]],
                     created: str | None = None) -> dict[str, Any]:
    """The sharded manifest: what the shards share, totals, and ``entries`` (in shard order)."""
    from indexing.forward_writer import WRITER_KEYS
    from ranker.sharded import SHARDED_VERSION

    first = shards[0].manifest
    manifest: dict[str, Any] = {
        "kind": SHARDED_KIND,
        "version": SHARDED_VERSION,
        "created": created or _now(),
        "dim": int(first["dim"]),
        "dtype": first["dtype"],
        "quantization": {"kind": quantization_of(first)["kind"]},
        "similarity": first["similarity"],
        "documents": sum(s.num_docs for s in shards),
        "vectors": sum(s.num_vectors for s in shards),
    }
    if "encoder" in first:
        manifest["encoder"] = first["encoder"]
    skip = WRITER_KEYS | {"encoder", "shards", "updated"} | set(manifest)
    manifest.update({key: value for key, value in first.items()
                     if key not in skip and all(s.manifest.get(key) == value for s in shards[1:])})
    if created:
        manifest["updated"] = _now()
    manifest["shards"] = entries
    return manifest


def update_index_summary(forward: Path, manifest: dict[str, Any]) -> None:
    """If ``forward`` is ``<index>/vectors``, refresh the ``vectors`` summary in ``<index>/manifest.json``."""
    from indexing.derived_index import SUMMARY_KEYS

    root = forward.parent
    if forward.name != VECTORS_DIR or not is_index_root(root):
        return
    index_manifest = read_manifest(root)
    summary = {key: manifest[key] for key in SUMMARY_KEYS if key in manifest}
    if manifest.get("kind") == SHARDED_KIND:
        summary["shards"] = len(manifest["shards"])
    index_manifest["vectors"] = {**summary, "dir": VECTORS_DIR}
    write_json_atomic(root / MANIFEST, index_manifest)
    write_row_map(root)


def remove_sources(sources: Sequence[Source], keep: Path) -> None:
    """``--move``: remove the given sources, except the result ``keep`` itself (or anything inside it)."""
    keep = keep.resolve()
    for given in dict.fromkeys(s.given for s in sources):
        where = given.resolve() if given.exists() else None
        if where is not None and where != keep and keep not in where.parents:
            shutil.rmtree(where)


def _refuse_moving_into_itself(sources: Sequence[Source], out: Path) -> None:
    out = out.resolve()
    for source in sources:
        if source.given.resolve() in out.parents:
            raise InputError(f"{source.given}: --move would remove {out}, which lies inside it")


def create_sharded(out: str | Path, shards: Sequence[str | Path], force: bool = False, link: bool = False,
                   move: bool = False) -> dict[str, Any]:
    """Write a sharded forward index at ``out`` holding (copies of) ``shards``; returns its manifest."""
    from ranker.atomic import check_target

    out = forward_dir(out)
    check_target(out, force, marker=MANIFEST, what="a forward index")
    sources = resolve_sources(shards)
    if move:
        _refuse_moving_into_itself(sources, out)
    return _build(out, sources, force, link or move, move)


def _build(out: Path, sources: list[Source], force: bool, link: bool, move: bool,
           link_first: bool = False) -> dict[str, Any]:
    """Write the sharded index ``out`` from ``sources`` (checked here) atomically; ``link_first``: link shard 0."""
    from ranker.atomic import atomic_directory
    from ranker.sharded import SHARDS_DIR

    check_shards(sources[0].index.manifest, f"the first shard ({sources[0].index.path})",
                 [s.index for s in sources])

    with atomic_directory(out, force=force, marker=MANIFEST, what="a forward index") as tmp:
        entries = []
        for i, source in enumerate(sources):
            rel = f"{SHARDS_DIR}/{i:05d}"
            place_shard(source.index, tmp / rel, link=link or (link_first and i == 0))
            entries.append(shard_entry(rel, tmp / rel, source))
        manifest = compose_manifest([s.index for s in sources], entries)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if move:
        remove_sources(sources, keep=out)
    update_index_summary(out, manifest)
    return manifest


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise ``shards add`` runs on one sharded index (an exclusive ``flock``)."""
    import fcntl

    with open(directory / LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def add_shards(index: str | Path, shards: Sequence[str | Path], link: bool = False,
               move: bool = False) -> dict[str, Any]:
    """Add ``shards`` to the sharded forward index ``index``; returns the new manifest.

    A plain forward index is first turned into a sharded one (its files are
    hard-linked, or copied, into shard 0).
    """
    from ranker.sharded import SHARDS_DIR, ShardedForwardIndex

    target = forward_dir(index)
    if not (target / MANIFEST).is_file():
        raise InputError(f"{index}: has no forward index; create one with ff-index shards create --out")
    sources = resolve_sources(shards)
    if move:
        _refuse_moving_into_itself(sources, target)
    current = ForwardIndex.open(target)
    if not isinstance(current, ShardedForwardIndex):
        return _build(target, [Source(target, current), *sources], True, link or move, move, link_first=True)
    with _locked(target):
        current = ShardedForwardIndex.open(target)  # again, under the lock
        inside = target.resolve()
        for source in sources:
            if inside in source.index.path.resolve().parents:
                raise InputError(f"{source.index.path}: is already a shard of {target}")
        check_shards(current.manifest, f"the sharded index {target}", [*current.shards, *[s.index for s in sources]])
        shards_dir = target / SHARDS_DIR
        remove_stale_partials(shards_dir)  # shards half-placed by a killed add
        used = [int(p.name) for p in shards_dir.iterdir() if p.name.isdigit()] if shards_dir.is_dir() else []
        used += [int(Path(e["path"]).name) for e in current.manifest["shards"] if Path(e["path"]).name.isdigit()]
        number = max(used, default=-1) + 1
        placed: list[Path] = []
        entries = list(current.manifest["shards"])
        try:
            for source in sources:
                name = f"{number:05d}"
                number += 1
                with staged_directory(shards_dir / name, create=False) as staged:
                    place_shard(source.index, staged, link=link or move)
                placed.append(shards_dir / name)
                entries.append(shard_entry(f"{SHARDS_DIR}/{name}", shards_dir / name, source))
            manifest = compose_manifest([*current.shards, *[s.index for s in sources]], entries,
                                        created=current.manifest.get("created"))
            write_json_atomic(target / MANIFEST, manifest)
        except BaseException:
            for done in placed:
                shutil.rmtree(done, ignore_errors=True)
            raise
    if move:
        remove_sources(sources, keep=target)
    update_index_summary(target, manifest)
    return manifest


def merge_shards(index: str | Path, out: str | Path, force: bool = False, verify: bool = False) -> dict[str, Any]:
    """Write ``out``: one plain forward index with every document of the sharded ``index``, in shard order.

    Quantised shards are merged only when they share their codebooks (the codes
    are then carried over unchanged); otherwise merge float shards and quantise.
    """
    from ranker.atomic import atomic_directory, check_target
    from indexing.derived_index import float_chunks
    from indexing.forward_writer import WRITER_KEYS
    from indexing.forward_writer import write_forward_index
    from ranker.quantization import FLOAT_KINDS
    from ranker.sharded import ShardedForwardIndex

    source_dir = forward_dir(index)
    source = ForwardIndex.open(source_dir, verify=verify)
    if not isinstance(source, ShardedForwardIndex):
        raise InputError(f"{source_dir}: not a sharded forward index (nothing to merge)")
    out = forward_dir(out)
    check_target(out, force, marker=MANIFEST, what="a forward index")
    codec = None
    if source.kind not in FLOAT_KINDS:
        if len(source._groups) != 1:
            raise InputError(f"{source_dir}: the shards are {source.kind} with different codebooks; merge the "
                             "float shards, then quantise the result (ff-index quantize)")
        codec = source.shards[0].codec
    meta = {key: value for key, value in source.manifest.items()
            if key not in WRITER_KEYS | {"shards", "updated"}}
    meta["merged_from"] = {"sharded_index": str(source_dir.resolve()), "shards": len(source.shards)}
    ids = [raw.decode("utf-8") for raw in source.doc_ids.tolist()]
    counts = np.diff(source.doc_offsets)
    with atomic_directory(out, force=force, marker=MANIFEST, what="a forward index") as tmp:
        tmp.rmdir()  # the writer creates its directory itself
        try:
            manifest = write_forward_index(tmp, ids, counts, float_chunks(source.vectors, source.num_vectors),
                                           source.dim, dtype=source.kind if codec is None else "float32",
                                           similarity=source.manifest["similarity"], meta=meta, codec=codec)
        except ValueError as err:
            raise InputError(f"{source_dir}: {err}") from None
        if codec is not None:
            _check_codes_kept(np.load(tmp / "vectors.npy", mmap_mode="r"), source, source_dir)
    update_index_summary(out, manifest)
    return manifest


def _check_codes_kept(written: np.ndarray, source: Any, source_dir: Path) -> None:
    for lo in range(0, source.num_vectors, 65536):
        if not np.array_equal(written[lo:lo + 65536], source.codes[lo:lo + 65536]):
            raise InputError(f"{source_dir}: re-encoding changed some codes; merge the float shards, then quantise")


def verify_sharded(index: str | Path) -> ForwardIndex:
    """Open ``index`` recomputing every shard file's checksum; returns the opened index."""
    return ForwardIndex.open(forward_dir(index), verify=True)
