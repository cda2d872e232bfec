"""The widget's DICOM RT section: export the structures as RTSTRUCT/SEG, import an RTSTRUCT/SEG.

A thin view over :mod:`io.dicom`: the structures exported are the target label map (named and
coloured by the class table) plus every single-structure Labels layer on the same image (those an
RTSTRUCT/SEG import or a study folder opened), so overlapping structures stay separate. Export needs
an image read from a DICOM series folder; a series with unusable UIDs asks for a folder for the
corrected copy (``--write-corrected-series`` in the CLI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QPushButton

from ..layers import META_KEY, geometry_of_layer


class DicomPanel(QGroupBox):
    """Export / Import buttons; ``widget`` is the :class:`SegmentationWidget` it belongs to."""

    def __init__(self, widget) -> None:
        super().__init__("DICOM RT (treatment planning)")
        self.widget = widget
        self.export_rt_button = QPushButton("Export RTSTRUCT…")
        self.export_seg_button = QPushButton("Export SEG…")
        self.import_button = QPushButton("Import RTSTRUCT/SEG…")
        row = QHBoxLayout(self)
        for b in (self.export_rt_button, self.export_seg_button, self.import_button):
            b.setToolTip(
                "Structures as a DICOM RT Structure Set or Segmentation referencing the image's DICOM series"
                if b is not self.import_button
                else "Read an RTSTRUCT or SEG of this series: one layer per structure"
            )
            row.addWidget(b)
        self.export_rt_button.clicked.connect(lambda: self._export_dialog("rtstruct"))
        self.export_seg_button.clicked.connect(lambda: self._export_dialog("seg"))
        self.import_button.clicked.connect(self._import_dialog)

    # --- headless-testable actions ------------------------------------------------------------
    def series_folder(self) -> Path:
        from ..io.dicom import DicomExchangeError

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
        """The structure set exported: the target label map and the single-structure layers."""
        from napari.layers import Labels

        from ..annotation import StructureSet

        session = self.widget.session
        out = StructureSet(series.geometry, series.shape)
        target = session.labels_layer
        if target is not None and np.asarray(target.data).shape == series.shape:
            labels = np.asarray(target.data)
            table = {c.id: c for c in session.classes}
            for label_id in (int(v) for v in np.unique(labels) if v != 0):  # ids without a class too
                c = table.get(label_id)
                name = c.name if c is not None else f"label_{label_id}"
                while name in out:
                    name += "_"
                out.add(name, labels == label_id, c.color if c is not None else None)
        for layer in self.widget.viewer.layers:
            meta = layer.metadata.get(META_KEY, {}) if isinstance(layer, Labels) else {}
            if layer is target or "structure" not in meta or np.asarray(layer.data).shape != series.shape:
                continue
            name = layer.name
            while name in out:
                name += "_"
            out.add(name, np.asarray(layer.data) > 0, _layer_color(layer))
        return out

    def export(self, path, kind: str = "rtstruct", corrected_dir=None) -> list[str]:
        """Write ``path`` (``kind`` ``"rtstruct"`` or ``"seg"``); returns the summary lines."""
        from ..io.dicom import export_structures, open_series

        series, note = open_series(self.series_folder(), corrected_dir)
        structures = self.structures(series)
        lines = ([note] if note else []) + export_structures(
            structures, series, rtstruct=path if kind == "rtstruct" else None, seg=path if kind == "seg" else None
        )
        self.widget.show_status(" ".join(lines))
        return lines

    def import_file(self, path) -> list[str]:
        """Add one Labels layer per structure of the RTSTRUCT/SEG at ``path``; returns the problems."""
        from ..io.dicom import import_structures, read_series
        from ..rt_layers import layers_of

        series = read_series(self.series_folder())
        image = self.widget.session.image_layer
        geometry = geometry_of_layer(image.metadata, image.scale, image.affine.affine_matrix)
        result = import_structures(path, series)
        for data, kwargs, _kind in layers_of(result.structures, geometry or series.geometry, path):
            self.widget.viewer.add_labels(data, **kwargs)
        self.widget.show_status(
            f"Imported {len(result.structures)} structures from {Path(path).name}."
            + (f" {len(result.problems)} problem(s): " + " | ".join(result.problems) if result.problems else "")
        )
        return result.problems

    # --- dialogs ------------------------------------------------------------------------------
    def _export_dialog(self, kind: str) -> None:
        from ..io.dicom import DicomExchangeError, SeriesUidError

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
        from ..io.dicom import DicomExchangeError

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
