"""The "Structures" section: contouring operations on the image's structure set, with a preview.

A view over headless state: the panel keeps a :class:`StructureSet` for the current image
(imported from the target labels layer, named by the label classes, plus the structures the
operations made) and runs :func:`annotation.contouring.plan` on a worker thread, so the window
never waits on a margin. Each structure an operation makes is shown as its own Labels layer
(``structure: NAME``), so overlapping planning structures (a PTV over a parotid) stay whole. Apply
records one :class:`ContourEdit`; Undo reverts the last one exactly.

``host()`` returns the widget's session (image layer, target labels layer, classes, volume); when
an annotation session owns the structure set, ``structures()`` can be pointed at it instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from ..annotation.contouring import OPERATIONS, ContourEdit, ContouringError, Margin, plan
from ..annotation.contouring.margins import parse_sides
from ..annotation.label_classes import LabelClass
from ..annotation.structure_set import StructureSet, StructureSetError
from . import layer_tools as lt

PREVIEW_LAYER = "contour preview"
LAYER_PREFIX = "structure: "
PREVIEW_RGBA = (1.0, 0.85, 0.1, 1.0)
# which parameter rows each operation shows
ROWS = {
    "margin": ("mm", "sides"),
    "ring": ("mm", "outer"),
    "interpolate": ("axis",),
    "smooth": ("mm",),
    "fill-holes": ("holes", "axis"),
    "largest": ("count",),
    "remove-islands": ("count",),
}


class _Refused(str):
    """An expected error's message, returned (not raised: superqt re-raises returned exceptions)."""


def _plan_or_error(*args, **kwargs) -> ContourEdit | _Refused:
    """:func:`plan` on the worker thread; expected errors come back as values, not tracebacks.

    The dense layer data is made here too (``edit.layer_data``), off the window's thread.
    """
    try:
        edit = plan(*args, **kwargs)
    except (ContouringError, StructureSetError) as err:
        return _Refused(str(err))
    edit.layer_data = edit.after.dense().astype(np.uint8)
    return edit


def _stats_text(structures: StructureSet, names: list[str], image) -> str:
    """Volume, intensity, centroid per structure; Dice, HD95, surface Dice of the first two."""
    from ..annotation.contouring import compare, structure_stats

    if image is not None and image.shape != structures.shape:
        image = None
    lines = []
    for name in names:
        st = structure_stats(structures.sparse(name), structures.geometry, image, name)
        line = f"{name}: {st.volume_cm3:.2f} cm3"
        if st.mean is not None:
            line += f", mean {st.mean:.1f} (min {st.minimum:.0f}, max {st.maximum:.0f})"
        if st.centroid_mm is not None:
            line += ", centroid LPS (" + ", ".join(f"{v:.1f}" for v in st.centroid_mm) + ") mm"
        lines.append(line)
    if len(names) >= 2:
        c = compare(structures.sparse(names[0]), structures.sparse(names[1]), structures.geometry, 1.0)
        lines.append(f"{names[0]} vs {names[1]}: Dice {c.dice:.3f}, HD95 {c.hd95_mm:.1f} mm, "
                     f"surface Dice {c.surface_dice:.3f} at 1 mm")
    return "\n".join(lines)


class ContouringPanel(QGroupBox):
    """Operation, inputs, distances, output name; Preview, Apply, Undo."""

    def __init__(self, viewer, host: Callable[[], object], parent=None) -> None:
        super().__init__("Structures", parent)
        self.viewer = viewer
        self.host = host
        self.structure_set: StructureSet | None = None
        self._image = None  # the image layer the set belongs to
        self.history: list[ContourEdit] = []
        self.preview: ContourEdit | None = None
        self._worker = None
        self._build()

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.import_button = QPushButton("Import target labels")
        self.import_button.setToolTip("Make one structure per label id of the target layer (named by the classes)")
        self.inputs = QListWidget()
        self.inputs.setSelectionMode(QAbstractItemView.NoSelection)
        self.inputs.setMaximumHeight(120)
        self.inputs.setToolTip("Tick the inputs; subtract takes the first ticked minus the others")
        self.operation = QComboBox()
        self.operation.addItems(list(OPERATIONS))
        self.mm = QDoubleSpinBox()
        self.mm.setRange(-200.0, 200.0)
        self.mm.setDecimals(1)
        self.mm.setValue(5.0)
        self.mm.setSuffix(" mm")
        self.sides = QLineEdit()
        self.sides.setPlaceholderText("per side, e.g. R5,L5,A10,P3,S7,I2 (optional)")
        self.outer = QDoubleSpinBox()
        self.outer.setRange(0.0, 300.0)
        self.outer.setValue(15.0)
        self.outer.setSuffix(" mm")
        self.axis = QComboBox()
        self.axis.addItems(["z", "y", "x"])
        self.holes = QComboBox()
        self.holes.addItems(["3d", "2d"])
        self.holes.setToolTip("3d: cavities closed in 3D; 2d: holes of each slice of the slice axis")
        self.count = QDoubleSpinBox()
        self.count.setRange(0.0, 100000.0)
        self.count.setValue(1.0)
        self.output = QLineEdit()
        self.output.setPlaceholderText("output structure name, e.g. PTV")
        self.preview_button = QPushButton("Preview")
        self.apply_button = QPushButton("Apply")
        self.undo_button = QPushButton("Undo")
        self.stats_button = QPushButton("Statistics")
        self.stats_button.setToolTip("Volume, intensity and centroid of the ticked structures; "
                                     "Dice, HD95 and surface Dice (1 mm) of the first two")
        self.status = QLabel("Import the target labels to start.")
        self.status.setWordWrap(True)

        self.form = QFormLayout()
        self.form.addRow("Operation", self.operation)
        self.form.addRow("Inputs", self.inputs)
        self._rows = {"mm": ("Distance", self.mm), "sides": ("Sides", self.sides), "outer": ("Outer", self.outer),
                      "holes": ("Holes", self.holes), "axis": ("Slice axis", self.axis), "count": ("Count / cm3", self.count)}
        for label, field in self._rows.values():
            self.form.addRow(label, field)
        self.form.addRow("Output", self.output)
        buttons = QHBoxLayout()
        for b in (self.preview_button, self.apply_button, self.undo_button, self.stats_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.import_button)
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

        self.import_button.clicked.connect(self.import_target)
        self.operation.currentTextChanged.connect(self._show_rows)
        self.preview_button.clicked.connect(lambda: self.run(apply=False))
        self.apply_button.clicked.connect(lambda: self.run(apply=True))
        self.undo_button.clicked.connect(self.undo)
        self.stats_button.clicked.connect(self.show_stats)
        self._show_rows(self.operation.currentText())

    def _show_rows(self, operation: str) -> None:
        shown = ROWS.get(operation, ())
        for key, (_, field) in self._rows.items():
            if hasattr(self.form, "setRowVisible"):  # Qt >= 6.4
                self.form.setRowVisible(field, key in shown)
            else:  # older Qt: hide the label and the field
                field.setVisible(key in shown)
                self.form.labelForField(field).setVisible(key in shown)
        self.count.setDecimals(2 if operation == "remove-islands" else 0)

    # --- the structure set --------------------------------------------------------------------
    def import_target(self) -> None:
        """(Re)build the set from the target labels; structures made here are kept."""
        session = self.host()
        if session is None or session.volume is None or session.labels_layer is None:
            self.status.setText("Choose an image (and a target labels layer) first.")
            return
        made = {}
        if self.structure_set is not None and self._image is session.image_layer:
            made = {e.output: self.structure_set.structure(e.output) for e in self.history
                    if e.output in self.structure_set}
        classes = [LabelClass(c.id, c.name, c.color) for c in session.classes]
        fresh = StructureSet.from_label_map(np.asarray(session.labels_layer.data), session.volume.geometry, classes)
        for name, s in made.items():
            if name in fresh:
                fresh.set_mask(name, s.mask, force=True)
            else:
                fresh.add(name, s.mask, s.color, codes=s.codes, locked=s.locked, prompts=s.prompts)
        if self._image is not session.image_layer:
            self.history.clear()
        self.structure_set, self._image = fresh, session.image_layer
        self.preview = None  # planned on the old set
        self._show_preview(None)
        self._refresh_inputs()
        self.status.setText(f"{len(fresh)} structures: {', '.join(fresh.names()) or 'none'}")

    def set_structures(self, structures: StructureSet, image_layer) -> None:
        """Work on a given set (an annotation session's) instead of importing one."""
        self.structure_set, self._image = structures, image_layer
        self.history.clear()
        self.preview = None
        self._show_preview(None)
        self._refresh_inputs()

    def _refresh_inputs(self) -> None:
        ticked = set(self.checked_inputs())
        self.inputs.clear()
        for name in self.structure_set.names() if self.structure_set is not None else []:
            item = QListWidgetItem(name + ("  (locked)" if self.structure_set.is_locked(name) else ""))
            item.setData(Qt.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in ticked else Qt.Unchecked)
            self.inputs.addItem(item)

    def checked_inputs(self) -> list[str]:
        return [self.inputs.item(i).data(Qt.UserRole) for i in range(self.inputs.count())
                if self.inputs.item(i).checkState() == Qt.Checked]

    def set_inputs(self, names: list[str]) -> None:
        for i in range(self.inputs.count()):
            item = self.inputs.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in names else Qt.Unchecked)

    # --- running --------------------------------------------------------------------------------
    def parameters(self) -> dict:
        op = self.operation.currentText()
        mm = float(self.mm.value())
        if op == "margin":
            return {"margin": parse_sides(self.sides.text()) if self.sides.text().strip() else Margin.isotropic(mm)}
        if op == "ring":
            return {"inner": mm, "outer": float(self.outer.value())}
        if op == "interpolate":
            return {"axis": self.axis.currentText()}
        if op == "smooth":
            return {"mm": mm}
        if op == "fill-holes":
            return {"mode": self.holes.currentText(), "axis": self.axis.currentText()}
        if op == "largest":
            return {"count": max(1, int(self.count.value()))}
        if op == "remove-islands":
            return {"min_cm3": float(self.count.value())}
        return {}

    def run(self, apply: bool) -> None:
        """Preview (or apply) the chosen operation; the work runs on a thread."""
        from napari.qt.threading import create_worker

        if self.busy:
            return
        if self.structure_set is None:
            self.import_target()
            if self.structure_set is None:
                return
        op, inputs, output = self.operation.currentText(), self.checked_inputs(), self.output.text().strip()
        if not output:
            output = f"{inputs[0]}_{op}" if inputs else ""
            self.output.setText(output)
        try:
            params = self.parameters()
        except ContouringError as err:
            self.status.setText(str(err))
            return
        ready = self.preview
        if apply and ready is not None and (ready.operation, ready.inputs, ready.output) == (op, tuple(inputs), output) \
                and ready.params == params:
            self._finish(ready, apply=True, seconds=0.0)
            return
        structures = self.structure_set
        started = time.perf_counter()
        worker = create_worker(_plan_or_error, structures, op, inputs, output, **params)
        worker.returned.connect(lambda edit: self._finish(edit, apply, time.perf_counter() - started))
        worker.finished.connect(lambda: setattr(self, "_worker", None))
        self._worker = worker
        self.status.setText(f"{op}…")
        worker.start()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Process Qt events until no operation runs; for tests and scripts."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.005)
        return not self.busy

    def _finish(self, edit: ContourEdit | _Refused, apply: bool, seconds: float) -> None:
        if isinstance(edit, _Refused):  # bad input: one line in the status, nothing changed
            self.status.setText(str(edit))
            return
        voxel_cm3 = float(np.prod(self.structure_set.geometry.spacing)) / 1000.0
        volume = f"{edit.after.count * voxel_cm3:.2f} cm3"
        if not apply:
            self.preview = edit
            self._show_preview(edit.layer_data)
            self.status.setText(f"Preview of {edit.output}: {volume} ({seconds:.2f} s). Apply to keep it.")
            return
        edit.apply(self.structure_set)
        self.history.append(edit)
        self.preview = None
        self._show_preview(None)
        self._show_structure(edit.output, edit.__dict__.pop("layer_data", None))  # history keeps no copy
        self._refresh_inputs()
        self.status.setText(f"{edit.output}: {volume} ({edit.operation}). Undo takes it back.")

    def undo(self) -> None:
        if not self.history or self.busy:
            self.status.setText("Nothing to undo.")
            return
        edit = self.history[-1]
        try:
            edit.revert(self.structure_set)
        except StructureSetError as err:  # e.g. the output was locked since: say so, keep the step
            self.status.setText(f"Cannot undo: {err}")
            return
        self.history.pop()
        self._show_structure(edit.output)
        self._refresh_inputs()
        self.status.setText(f"Undone: {edit.operation} into {edit.output}.")

    def show_stats(self) -> None:
        """Figures of the ticked structures into the status line (computed on a worker thread)."""
        from napari.qt.threading import create_worker

        names = self.checked_inputs()
        if self.structure_set is None or not names:
            self.status.setText("Tick one or more structures for their statistics.")
            return
        if self.busy:
            return
        session = self.host()
        image = session.volume.array if session is not None and session.volume is not None else None
        worker = create_worker(_stats_text, self.structure_set, names, image)
        worker.returned.connect(self.status.setText)
        worker.finished.connect(lambda: setattr(self, "_worker", None))
        self._worker = worker
        self.status.setText("statistics…")
        worker.start()

    # --- layers ---------------------------------------------------------------------------------
    def _layer(self, name: str):
        return next((x for x in self.viewer.layers if x.name == name), None)

    def _show_preview(self, data: np.ndarray | None) -> None:
        layer = self._layer(PREVIEW_LAYER)
        if data is None:
            if layer is not None:
                self.viewer.layers.remove(layer)
            return
        if layer is None:
            layer = self.viewer.add_labels(data, name=PREVIEW_LAYER, opacity=0.5, **lt.placement(self._image))
            layer.colormap = lt.label_colormap([], {1: PREVIEW_RGBA})
        else:
            layer.data = data

    def _show_structure(self, name: str, data: np.ndarray | None = None) -> None:
        """Show (or update, or remove when gone) the layer of a structure made here."""
        layer_name = LAYER_PREFIX + name
        layer = self._layer(layer_name)
        if name not in self.structure_set:
            if layer is not None:
                self.viewer.layers.remove(layer)
            return
        if data is None:
            data = self.structure_set.mask(name).astype(np.uint8)
        if layer is None:
            layer = self.viewer.add_labels(data, name=layer_name, opacity=0.6, **lt.placement(self._image))
        else:
            layer.data = data
        lt.apply_classes(layer, [LabelClass(1, name, self.structure_set.color(name))])

    def structure_layer(self, name: str):
        return self._layer(LAYER_PREFIX + name)
