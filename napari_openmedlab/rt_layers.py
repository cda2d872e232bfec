"""A DICOM study folder (image series + RTSTRUCT/SEG files) as layer data tuples. No napari import.

A radiotherapy user's folder holds the CT series and one or more structure files. The image opens as
usual; each ROI or segment of each structure file becomes its own Labels layer (its name, its
colour), rasterised onto the series' grid by :mod:`dicom_rt`, so overlapping structures stay
separate. Problems (an ROI left out, an empty ROI) are logged one line each and kept in the layer
metadata of the image under ``openmedlab.structure_problems``.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .io.volume import Volume
from .layers import META_KEY, labels_layer_data

log = logging.getLogger(__name__)


def structure_layers(folder: str | os.PathLike, image: Volume) -> tuple[list[tuple], list[str]]:
    """Labels layer tuples for every structure of every RTSTRUCT/SEG in ``folder``, and the problems."""
    from .dicom_rt import DicomExchangeError, find_structure_files, open_study
    from .dicom_rt.series import dicom_files

    try:
        files = dicom_files(folder)  # headers only, read once
        if not find_structure_files(folder, files):
            return [], []
        series, results = open_study(folder, files)
    except DicomExchangeError as err:
        log.warning("%s", err)
        return [], [str(err)]
    problems = []
    if series.shape != image.shape or not series.geometry.same_grid(image.geometry, tol=1e-3):
        msg = f"{folder}: the structure files' series is not the image that was opened; structures not shown"
        log.warning("%s", msg)
        return [], [msg]
    layers = []
    for path, result in results:
        problems.extend(result.problems)
        layers.extend(layers_of(result.structures, image.geometry, path))
    for line in problems:
        log.warning("%s", line)
    return layers, problems


def add_problems(image_layer: tuple, problems: list[str]) -> tuple:
    """The image layer tuple with the structure import problems in its metadata."""
    data, kwargs, kind = image_layer
    if problems:
        kwargs.setdefault("metadata", {}).setdefault(META_KEY, {})["structure_problems"] = list(problems)
    return data, kwargs, kind


def layers_of(structures, geometry, source) -> list[tuple]:
    """One Labels layer tuple per structure (voxels 1, the structure's colour, its name)."""
    layers = []
    for s in structures:
        mask = structures.mask(s.name).astype(np.uint8)
        volume = Volume(mask, geometry, {"source": str(source), "structure": s.name, "codes": s.codes})
        data, kwargs, kind = labels_layer_data(volume, {1: s.name}, name=s.name)
        kwargs["colormap"] = {0: "transparent", 1: s.color, None: "transparent"}
        kwargs["opacity"] = 0.6
        layers.append((data, kwargs, kind))
    return layers
