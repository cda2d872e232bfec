"""Typed errors shared by the model families (checkpoint reading and loading).

Each message says what was wrong and, where there is one, what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read or used."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle refers to code we will not run (e.g. ``os.system``); it was refused.

    Nothing named in the pickle was imported or called: the refusal happens while the pickle is
    parsed, before any object is built from the offending reference.
    """

    def __init__(self, message: str, globals_found: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.globals_found = tuple(globals_found)


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit the network: keys missing, unexpected, or of the wrong shape.

    Attributes:
        missing: keys the network has and the checkpoint lacks.
        unexpected: keys the checkpoint has and the network lacks.
        mismatched: ``(key, checkpoint_shape, network_shape)`` for keys whose shapes differ.
    """

    def __init__(
        self,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mismatched: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
        *,
        what: str = "checkpoint",
        limit: int = 8,
    ) -> None:
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted((k, tuple(a), tuple(b)) for k, a, b in mismatched)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_preview(self.missing, limit)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_preview(self.unexpected, limit)}")
        if self.mismatched:
            shown = [f"{k} (checkpoint {list(a)} vs network {list(b)})" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {_preview(shown, limit)}")
        super().__init__(
            f"{what} does not fit the network; "
            + "; ".join(parts)
            + ". Is this the checkpoint of the chosen model?"
        )


def _preview(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
