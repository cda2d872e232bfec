"""What a SAM-Med3D object remembers between clicks (see :mod:`.sam_med3d`, "History").

After each ``predict`` the engine keeps the click list and every crop's low-res logits and
prompts. A later call whose clicks extend a remembered list continues from that state (one
decoder pass per crop); a call that repeats one (e.g. after undo) rebuilds its mask from the
remembered logits without running the network. So an object's mask depends only on its clicks.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .base import Prompts

#: remembered calls per object
HISTORY = 64


class ClickHistory:
    """The last :data:`HISTORY` states of the current object, newest last."""

    def __init__(self) -> None:
        self._entries: list[dict] = []

    def clear(self) -> None:
        self._entries = []

    def recall(self, prompts: Prompts, mask_key) -> tuple[dict | None, dict | None]:
        """The longest remembered state whose clicks prefix ``prompts``, and an exact match."""
        best = None
        n = len(prompts.points)
        for entry in reversed(self._entries):
            k = len(entry["points"])
            if k > n or entry["mask"] != mask_key:
                continue
            if not (np.array_equal(entry["points"], prompts.points[:k])
                    and np.array_equal(entry["labels"], prompts.labels[:k])):
                continue
            if k == n:
                return entry, entry
            if best is None or k > len(best["points"]):
                best = entry
        return best, None

    def remember(self, prompts: Prompts, mask_key, crop_prompts, first, logits) -> None:
        self._entries.append({
            "points": prompts.points.copy(), "labels": prompts.labels.copy(), "mask": mask_key,
            "first": first, "logits": logits, "crop_prompts": crop_prompts,
        })
        del self._entries[:-HISTORY]


def same_prompt(a: tuple | None, b: tuple) -> bool:
    """Whether a crop's remembered ``(points, labels)`` equal the new ones."""
    return a is not None and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def mask_key(mask) -> tuple | None:
    """A fingerprint of the mask to refine (the history keeps no reference to the array)."""
    if mask is None:
        return None
    bits = np.packbits(np.asarray(mask, bool))
    return (tuple(np.shape(mask)), hashlib.blake2b(bits.tobytes(), digest_size=16).digest())
