"""JSON Schemas (draft 2020-12) of the values on the engine's topics, shipped as package data.

Each :class:`~intent_stream.topics.TopicSpec` names its schema file (``None`` where a topic
carries other records' bytes unchanged, or is a Faust changelog). Schemas refer to each other
by relative ``$ref`` (``raw-record.v1.json`` uses ``segment-message.v1.json`` and
``account-events.v1.json``), so a validator
needs the whole directory: :func:`schema_names` lists it.

>>> load_schema("segment-message.v1.json")["title"]
'Segment message'
>>> "sales-alert.v1.json" in schema_names()
True
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

__all__ = ["load_schema", "schema_names"]

logger = logging.getLogger(__name__)


def schema_names() -> list[str]:
    """File names of every schema shipped with the package, sorted."""
    return sorted(
        entry.name for entry in resources.files(__name__).iterdir() if entry.name.endswith(".json")
    )


def load_schema(name: str) -> dict[str, Any]:
    """The schema in file ``name`` (e.g. ``"sales-alert.v1.json"``) as a dict.

    Raises :class:`FileNotFoundError` for a name that is not one of :func:`schema_names`.
    """
    if name not in schema_names():
        raise FileNotFoundError(f"no schema named {name!r}; known: {', '.join(schema_names())}")
    doc: dict[str, Any] = json.loads(
        resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    )
    return doc
