"""Model checkpoints as bytes: a versioned pickle envelope, refused when it does not match.

The worker stores these bytes in Redis (``{prefix}model:intent:v1``, ``{prefix}model:fit:v1``)
and restores them at start. A blob of another format version, of another kind, or that does
not unpickle raises :class:`CheckpointError`; the worker then logs a warning and starts
fresh. Unpickling runs code from the blob: only the engine's own Redis may hold these keys.

>>> from intent_stream.scoring.intent import IntentModel
>>> blob = dump_checkpoint("intent", {"model": IntentModel()})
>>> type(load_checkpoint(blob, "intent")["model"]).__name__
'IntentModel'
>>> load_checkpoint(blob, "fit")
Traceback (most recent call last):
...
intent_stream.scoring.checkpoint.CheckpointError: checkpoint holds 'intent' models, not 'fit'
>>> load_checkpoint(b"garbage", "intent")
Traceback (most recent call last):
...
intent_stream.scoring.checkpoint.CheckpointError: checkpoint does not unpickle (UnpicklingError)
"""

from __future__ import annotations

import pickle
import time
from typing import Any

__all__ = ["CHECKPOINT_VERSION", "CheckpointError", "dump_checkpoint", "load_checkpoint"]

#: Bump when a checkpoint written by this code could not be used by the next: old ones are
#: then refused (and the Redis key, which carries the version, changes too).
CHECKPOINT_VERSION = 1
_FORMAT = "intent_stream.checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, another version, or another kind."""


def dump_checkpoint(kind: str, objects: dict[str, Any]) -> bytes:
    """``objects`` (models, their health) as one versioned blob of ``kind``."""
    envelope = {
        "format": _FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "saved_at": time.time(),
        "objects": objects,
    }
    return pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint(blob: bytes, kind: str) -> dict[str, Any]:
    """The objects of a :func:`dump_checkpoint` blob of ``kind`` at this version."""
    try:
        envelope = pickle.loads(blob)
    except Exception as exc:  # any unpickling failure means a corrupt or foreign blob
        raise CheckpointError(f"checkpoint does not unpickle ({type(exc).__name__})") from None
    if not isinstance(envelope, dict) or envelope.get("format") != _FORMAT:
        raise CheckpointError("not an intent_stream checkpoint")
    if envelope.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint version {envelope.get('version')!r}, this worker reads "
            f"{CHECKPOINT_VERSION}"
        )
    if envelope.get("kind") != kind:
        raise CheckpointError(f"checkpoint holds {envelope.get('kind')!r} models, not {kind!r}")
    objects = envelope.get("objects")
    if not isinstance(objects, dict):
        raise CheckpointError("checkpoint holds no models")
    return objects
