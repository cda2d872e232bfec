"""The widget's DICOM RT section: export the structures as RTSTRUCT/SEG, import an RTSTRUCT/SEG.

A thin view over :mod:`dicom_rt` and the annotation session: Export writes the session's structure
set (every non-empty structure, overlaps kept, names, colours and codes); Import adds each structure
of the file to the session through requests (AddStructure, then an Edit painting its voxels), so
it shows in the structure list and undo takes it back. The single-structure Labels layers that the
reader makes for a study folder (``openmedlab view DIR``) are adopted the same way and removed from
the layer list. Export needs an image read from a DICOM series folder; a series with unusable UIDs
asks for a folder for the corrected copy (``--write-corrected-series`` in the CLI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QFileDialog, QGridLayout, QGroupBox, QPushButton

from ..layers import META_KEY


class DicomPanel(QGroupBox):
    """Export / Import buttons; ``widget`` is the :class:`SegmentationWidget` it belongs to."""

    def __init__(self, widget) -> None:
        super().__init__("DICOM RT (treatment planning)")
        self.widget = widget
        self.export_rt_button = QPushButton("Export RTSTRUCT…")
        self.export_seg_button = QPushButton("Export SEG…")
        self.import_button = QPushButton("Import RTSTRUCT/SEG…")
        grid = QGridLayout(self)  # two rows: the dock must fit a 1280-pixel window
        for i, b in enumerate((self.export_rt_button, self.export_seg_button, self.import_button)):
            b.setToolTip(
                "Structures as a DICOM RT Structure Set or Segmentation referencing the image's DICOM series"
                if b is not self.import_button
                else "Read an RTSTRUCT or SEG of this series: each structure joins the structure list"
            )
            grid.addWidget(b, i // 2, i % 2)
        self.export_rt_button.clicked.connect(lambda: self._export_dialog("rtstruct"))
        self.export_seg_button.clicked.connect(lambda: self._export_dialog("seg"))
        self.import_button.clicked.connect(self._import_dialog)
        self._adopted: list = []  # layers already moved into the session (their removal is deferred)
        widget.viewer.layers.events.inserted.connect(self._on_inserted)

    def _on_inserted(self, event) -> None:
        """A structure layer dropped in after the image (a study folder opened in napari)."""
        layer = event.value
        if not getattr(self.widget, "_building", False) and "structure" in getattr(layer, "metadata", {}).get(META_KEY, {}):
            self.adopt_structure_layers([layer])

    # --- headless-testable actions ------------------------------------------------------------
    def series_folder(self) -> Path:
        from ..dicom_rt import DicomExchangeError

        layer = self.widget.session.image_layer
        if layer is None:
            raise DicomExchangeError("choose an image layer first")
        meta = layer.metadata.get(META_KEY, {})
        if meta.get("format") != "dicom" or not Path(meta.get("source", "")).is_dir():
            raise DicomExchangeError(
                f"{layer.name}: not read from a DICOM series folder, so an RTSTRUCT/SEG cannot reference its images"
            )
        return Path(meta["source"])

    def structures(self, series):
        """The structure set exported: the session's non-empty structures (overlaps kept)."""
        from ..dicom_rt import DicomExchangeError

        session = self.widget.session.model
        if session is None:
            raise DicomExchangeError("choose an image layer first")
        out = session.structures.copy()
        if tuple(out.shape) != tuple(series.shape):
            raise DicomExchangeError(
                f"the structures' grid {tuple(out.shape)} is not the series' {tuple(series.shape)}"
            )
        for name in [s.name for s in out if s.mask.empty]:
            out.remove(name, force=True)
        return out

    def export(self, path, kind: str = "rtstruct", corrected_dir=None) -> list[str]:
        """Write ``path`` (``kind`` ``"rtstruct"`` or ``"seg"``); returns the summary lines."""
        from ..dicom_rt import export_structures, open_series

        series, note = open_series(self.series_folder(), corrected_dir)
        structures = self.structures(series)
        lines = ([note] if note else []) + export_structures(
            structures, series, rtstruct=path if kind == "rtstruct" else None, seg=path if kind == "seg" else None
        )
        self.widget.show_status(" ".join(lines))
        return lines

    def import_file(self, path) -> list[str]:
        """Add each structure of the RTSTRUCT/SEG at ``path`` to the session; returns the problems."""
        from ..dicom_rt import DicomExchangeError, import_structures, read_series

        series = read_series(self.series_folder())
        if tuple(series.shape) != tuple(self.widget.session.volume.shape):
            raise DicomExchangeError(f"{Path(path).name}: its series is not the image being annotated")
        result = import_structures(path, series)
        names = self.add_structures(
            (s.name, s.color, s.codes, result.structures.sparse(s.name)) for s in result.structures
        )
        self.widget.show_status(
            f"Imported {len(names)} structures from {Path(path).name}."
            + (f" {len(result.problems)} problem(s): " + " | ".join(result.problems) if result.problems else "")
        )
        return result.problems

    def add_structures(self, items) -> list[str]:
        """Add ``(name, color, codes, SparseMask)`` items to the session as requests; a name taken
        already gets a number. Returns the names given."""
        from ..annotation import requests as rq

        view = self.widget.session
        model = view.model
        names = []
        for name, color, codes, sparse in items:
            unique, n = name, 2
            while unique in model.structures:
                unique, n = f"{name} {n}", n + 1
            model.handle(rq.AddStructure(unique, color, dict(codes or {})))
            if not sparse.empty:
                model.handle(rq.Edit.from_mask(unique, "paint", sparse.patch(), sparse.bbox[:3]))
            names.append(unique)
        if names:
            view.redraw()
            if view.selected is None:
                view.select(names[0])
            self.widget.refresh_structures()
        return names

    def adopt_structure_layers(self, candidates=None) -> list[str]:
        """Move the reader's single-structure Labels layers (an RTSTRUCT/SEG of a study folder) that
        lie on the image's grid into the session; the layers are then removed. Returns the names."""
        from napari.layers import Labels
        from qtpy.QtCore import QTimer

        from ..annotation.masks import SparseMask

        view = self.widget.session
        if view.model is None:
            return []
        shape = tuple(view.volume.shape)
        layers = [
            x
            for x in (self.widget.viewer.layers if candidates is None else candidates)
            if isinstance(x, Labels)
            and not any(x is y for y in self._adopted)
            and "structure" in x.metadata.get(META_KEY, {})
            and x not in view.helper_layers()
            and x is not view.labels_layer
            and tuple(np.shape(x.data)) == shape
        ]
        if not layers:
            return []
        items = [
            (x.name, _layer_color(x), x.metadata[META_KEY].get("codes"), SparseMask.from_dense(np.asarray(x.data) > 0))
            for x in layers
        ]
        names = self.add_structures(items)
        self._adopted.extend(layers)

        def remove() -> None:  # not while napari is inserting a layer
            for x in layers:
                if x in self.widget.viewer.layers:
                    self.widget.viewer.layers.remove(x)
            self._adopted = [x for x in self._adopted if x in self.widget.viewer.layers]

        QTimer.singleShot(0, remove)
        self.widget.show_status(f"{len(names)} structures of the study added to the structure list.")
        return names

    # --- dialogs ------------------------------------------------------------------------------
    def _export_dialog(self, kind: str) -> None:
        from ..dicom_rt import DicomExchangeError, SeriesUidError

        default = "RS_structures.dcm" if kind == "rtstruct" else "SEG_structures.dcm"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", default, "DICOM (*.dcm)")
        if not path:
            return
        try:
            try:
                self.export(path, kind)
            except SeriesUidError as err:
                self.widget.show_status(f"{err}. Choose an empty folder for the corrected copy.")
                folder = QFileDialog.getExistingDirectory(self, "Folder for the corrected series (new UIDs)")
                if folder:
                    self.export(path, kind, corrected_dir=folder)
        except (DicomExchangeError, OSError, ValueError) as err:
            self.widget.show_status(f"Export failed: {err}")

    def _import_dialog(self) -> None:
        from ..dicom_rt import DicomExchangeError

        path, _ = QFileDialog.getOpenFileName(self, "Import RTSTRUCT or SEG", "", "DICOM (*.dcm);;All files (*)")
        if not path:
            return
        try:
            self.import_file(path)
        except (DicomExchangeError, OSError, ValueError) as err:
            self.widget.show_status(f"Import failed: {err}")


def _layer_color(layer) -> str | None:
    try:
        rgba = layer.colormap.map(1)
    except (AttributeError, TypeError, ValueError):
        return None
    return "#" + "".join(f"{int(round(float(v) * 255)):02x}" for v in np.ravel(rgba)[:3])
