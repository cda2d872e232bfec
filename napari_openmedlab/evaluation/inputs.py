"""Checks on what is evaluated: inputs that would give a score that cannot be right are refused."""

from __future__ import annotations

import numpy as np

from ..io.volume import Volume


class EvaluationInputError(ValueError):
    """A label map or an option makes the evaluation meaningless (e.g. a CT given as labels)."""


MAX_LABEL_IDS = 1000  # TotalSegmentator has 117; thousands of "ids" are an image's intensities


def check_label_map(labels: Volume, name: str = "labels") -> None:
    """Refuse a label map that is not non-negative integer ids (e.g. a CT given as labels).

    Scoring one would take minutes and report hundreds of "objects" that mean nothing.
    """
    array = np.asarray(labels.array)
    if array.dtype == bool:
        return
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all() \
                or not np.array_equal(array, np.round(array)):
            raise EvaluationInputError(
                f"{name}: the label map holds non-integer values ({array.dtype}); give a label map "
                "of integer ids, not an image"
            )
    lo = array.min() if array.size else 0
    if lo < 0:
        raise EvaluationInputError(
            f"{name}: the label map holds negative values (down to {lo:g}); label ids are 0 "
            "(background) and up: is this an image rather than its labels?"
        )
    n_ids = len(np.unique(array))
    if n_ids > MAX_LABEL_IDS:
        raise EvaluationInputError(
            f"{name}: the label map holds {n_ids} distinct values (more than {MAX_LABEL_IDS}); "
            "is this an image rather than its labels?"
        )
