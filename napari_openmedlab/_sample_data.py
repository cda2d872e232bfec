"""Sample data: an abdominal CT with its TotalSegmentator organ labels (see README: attribution)."""

from __future__ import annotations

from pathlib import Path

from .io import read_volume
from .layers import image_layer_data, label_names_beside, labels_layer_data

SAMPLE_DIR = Path(__file__).parent / "sample_data"
SAMPLE_CT = SAMPLE_DIR / "ct.nii.gz"
SAMPLE_SEG = SAMPLE_DIR / "seg.nii.gz"


def sample_ct() -> list[tuple]:
    """The CT alone (int16 HU, 3 mm, stored RAS: shown anterior-up in physical LPS space)."""
    return [image_layer_data(read_volume(SAMPLE_CT), name="sample CT")]


def sample_ct_with_organs() -> list[tuple]:
    """The CT and its 41-organ reference segmentation (hidden until shown); names show on hover."""
    data, kwargs, kind = labels_layer_data(
        read_volume(SAMPLE_SEG), label_names_beside(str(SAMPLE_SEG)), name="organs"
    )
    # The reference starts hidden: shown, it covers the first preview the user makes.
    return [*sample_ct(), (data, {**kwargs, "visible": False}, kind)]
