"""``irds:<dataset id>`` sources: corpora, queries and qrels from ir_datasets (the ``irds`` extra).

``irds:beir/scifact/test`` names the ir_datasets dataset ``beir/scifact/test``;
the dataset ID picks the split, so ``--split`` does not apply. ir_datasets
fetches a dataset's files on first use and caches them under
``IR_DATASETS_HOME`` (default ``~/.ir_datasets``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

from ranker.errors import InputError
from ranker.optional_deps import import_extra

PREFIX = "irds:"
ENTITIES = ("docs", "queries", "qrels")


def is_irds(source: object) -> bool:
    """Whether ``source`` is an ``irds:<dataset id>`` string."""
    return isinstance(source, str) and source.startswith(PREFIX)


def dataset_id(source: str) -> str:
    """The dataset ID of an ``irds:`` source (an error if it is empty)."""
    name = source[len(PREFIX):].strip()
    if not name:
        raise InputError(f"{source!r}: expected irds:<dataset id>, e.g. irds:beir/scifact/test")
    return name


def load(source: str, entity: str) -> Any:
    """Load the dataset an ``irds:`` source names and check that it provides ``entity`` (docs, queries, qrels)."""
    name = dataset_id(source)
    ir_datasets = import_extra("ir_datasets", "irds", f"{source}: reading ir_datasets collections")
    try:
        dataset = ir_datasets.load(name)
    except KeyError:
        close = difflib.get_close_matches(name, list(ir_datasets.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"{source}: unknown ir_datasets dataset {name!r}{hint}") from None
    if not getattr(dataset, f"has_{entity}")():
        provides = [e for e in ENTITIES if getattr(dataset, f"has_{e}")()]
        raise InputError(f"{source}: dataset {name!r} has no {entity} (it provides: {', '.join(provides) or 'none'})")
    return dataset


def iterate(source: str, dataset: Any, entity: str) -> Iterator[Any]:
    """Yield the dataset's ``entity`` records; a failure to fetch or read its files becomes one :class:`InputError`."""
    try:
        yield from getattr(dataset, f"{entity}_iter")()
    except OSError as err:  # includes requests' ConnectionError: ir_datasets downloads on first use
        raise InputError(f"{source}: cannot read the dataset's {entity} ({type(err).__name__}: "
                         f"{' '.join(str(err).split())}); ir_datasets fetches its files on first use into "
                         f"IR_DATASETS_HOME (~/.ir_datasets)") from None


def first_field(record: Any, fields: Iterable[str]) -> str | None:
    """The first of ``fields`` that the namedtuple ``record`` has, as a string (``None`` if it has none)."""
    for field in fields:
        if field in record._fields:
            value = getattr(record, field)
            return "" if value is None else str(value)
    return None
