"""Connected components of a large 3D mask, labelled slab by slab.

``scipy.ndimage.label`` holds Python's global lock for its whole run: on a body-sized box (60 M
voxels) that is a few hundred milliseconds in which a napari window running the operation on a
worker thread cannot repaint. Labelling slabs of a few slices, then joining the labels that touch
across each slab face (a graph's connected components), gives the same components in short calls.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SLAB = 16


def _face_offsets(connectivity: int) -> list[tuple[int, int]]:
    """In-plane offsets (dy, dx) that connect two voxels of adjacent slices."""
    if connectivity == 1:
        return [(0, 0)]
    if connectivity == 2:
        return [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    return [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _shifted_pairs(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Label pairs (a[y, x], b[y + dy, x + dx]) where both are set."""
    h, w = a.shape
    sa = a[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    sb = b[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    both = (sa > 0) & (sb > 0)
    return np.stack([sa[both], sb[both]], axis=1)


class Components:
    """Components of ``mask`` (boolean ``(z, y, x)``) at ``connectivity`` 1, 2 or 3.

    Attributes:
        slabs: per slab along axis 0, ``(start, labels)`` with labels unique across slabs (0: off).
        component: label -> component index (``component[0]`` unused).
        sizes: voxels per component.
    """

    def __init__(self, mask: np.ndarray, connectivity: int = 1) -> None:
        structure = ndimage.generate_binary_structure(3, connectivity)
        self.slabs: list[tuple[int, np.ndarray]] = []
        total = 0
        for z0 in range(0, mask.shape[0], SLAB):
            labels, n = ndimage.label(mask[z0 : z0 + SLAB], structure)
            labels[labels > 0] += total
            self.slabs.append((z0, labels))
            total += n
        pairs = [np.zeros((0, 2), dtype=np.int64)]
        for (_, lower), (_, upper) in zip(self.slabs, self.slabs[1:]):
            for dy, dx in _face_offsets(connectivity):
                pairs.append(_shifted_pairs(lower[-1], upper[0], dy, dx))
        edges = np.concatenate(pairs).astype(np.int64)
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(total + 1, total + 1))
        _, self.component = connected_components(graph, directed=False)
        label_sizes = np.zeros(total + 1, dtype=np.int64)
        for _, labels in self.slabs:
            label_sizes += np.bincount(labels.ravel(), minlength=total + 1)
        label_sizes[0] = 0
        self.sizes = np.bincount(self.component, weights=label_sizes).astype(np.int64)  # background: 0

    def select(self, keep: np.ndarray) -> np.ndarray:
        """A boolean mask of the components where ``keep[component]`` is True (slab by slab)."""
        keep_label = keep[self.component]
        keep_label[0] = False
        return np.concatenate([keep_label[labels] for _, labels in self.slabs], axis=0)

    def touching_border(self) -> np.ndarray:
        """Per component: does it reach a face of the box?"""
        hit = np.zeros(len(self.sizes), bool)
        first, last = self.slabs[0][1], self.slabs[-1][1]
        faces = [first[0], last[-1]]
        for _, labels in self.slabs:
            faces += [labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
        for face in faces:
            ids = np.unique(face)
            hit[self.component[ids[ids > 0]]] = True
        return hit


__all__ = ["Components"]
