"""The "Contouring" section: margins, booleans, interpolation... on the session's structure set.

A view: the structures belong to the widget's :class:`AnnotationSession` (``host()`` returns the
:class:`SessionView`). Preview computes the operation on a worker thread (the window never waits
on a margin) and shows it in a local yellow layer; Apply sends one :class:`Contour` request
through ``send`` (the widget's request path), so the result appears in the structure list and
Undo/Redo take it back like any other edit. A previewed result is handed to the session with
:func:`offer_plan` and written without computing it again.
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

from ..annotation import requests as rq
from ..annotation.contouring import OPERATIONS, ContouringError, Margin
from ..annotation.contouring.margins import parse_sides
from ..annotation.session_contouring import PlannedContour, offer_plan, plan_request, request_params
from ..annotation.structure_set import StructureSet, StructureSetError
from . import layer_tools as lt

PREVIEW_LAYER = "contour preview"
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


def _plan_or_error(structures: StructureSet, request: rq.Contour, preview: bool) -> PlannedContour | _Refused:
    """:func:`plan_request` on the worker thread; expected errors come back as values, not tracebacks.

    A preview's dense layer data is made here too (``layer_data``), off the window's thread.
    """
    try:
        planned = plan_request(structures, request)
    except (ContouringError, StructureSetError) as err:
        return _Refused(str(err))
    if preview:
        planned.layer_data = planned.edit.after.dense().astype(np.uint8)
    return planned


def _stats_text(structures: StructureSet, names: list[str], image) -> str:
    """Volume, intensity, centroid per structure; Dice, HD95, surface Dice of the first two."""
    from ..annotation.contouring import structure_stats
    from ..evaluation.structure_comparison import compare

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
    """Operation, inputs, distances, output name; Preview, Apply, Undo, Statistics.

    ``host()`` returns the widget's :class:`SessionView`; ``send(request)`` hands a request to the
    session and redraws (returns the outcome, or None when it was refused and said why).
    """

    def __init__(self, viewer, host: Callable[[], object], send: Callable | None = None, parent=None) -> None:
        super().__init__("Contouring", parent)
        self.viewer = viewer
        self.host = host
        self.send = send if send is not None else (lambda request: host().handle(request))
        self.preview: PlannedContour | None = None
        self._worker = None
        self._build()

    @property
    def structure_set(self) -> StructureSet | None:
        view = self.host()
        return view.structures if view is not None else None

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
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
        self.status = QLabel("Tick the inputs, name the output, Preview or Apply.")
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
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

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

    # --- the structure set ---------------------------------------------------------------------
    def refresh_inputs(self) -> None:
        """List the session's structures (the widget calls this whenever its structure list changes);
        a preview planned on masks that changed since is dropped."""
        ss = self.structure_set
        if self.preview is not None and (ss is None or not self.preview.still_valid(ss)):
            self.preview = None
            self._show_preview(None)
        ticked = set(self.checked_inputs())
        names = ss.names() if ss is not None else []
        if [self.inputs.item(i).text() for i in range(self.inputs.count())] == \
                [n + ("  (locked)" if ss.is_locked(n) else "") for n in names]:
            return  # unchanged: keep the ticks as they are
        self.inputs.clear()
        for name in names:
            item = QListWidgetItem(name + ("  (locked)" if ss.is_locked(name) else ""))
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

    def request(self) -> rq.Contour:
        """The request the panel's fields describe (raises a one-line error when they cannot be one)."""
        op, inputs, output = self.operation.currentText(), self.checked_inputs(), self.output.text().strip()
        if not inputs:
            raise ContouringError("tick the input structure(s) first")
        if not output:
            output = f"{inputs[0]}_{op}"
            self.output.setText(output)
        return rq.Contour(op, inputs, output, request_params(self.parameters()))

    def run(self, apply: bool) -> None:
        """Preview (or apply) the chosen operation; the computing runs on a thread."""
        from napari.qt.threading import create_worker

        if self.busy:
            return
        ss = self.structure_set
        if ss is None:
            self.status.setText("Choose an image first.")
            return
        try:
            request = self.request()
        except ValueError as err:  # ContouringError, RequestError
            self.status.setText(str(err))
            return
        ready = self.preview
        if apply and ready is not None and ready.request == request and ready.still_valid(ss):
            self._finish(ready, apply=True, seconds=0.0)
            return
        started = time.perf_counter()
        worker = create_worker(_plan_or_error, ss, request, not apply)
        worker.returned.connect(lambda planned: self._finish(planned, apply, time.perf_counter() - started))
        worker.finished.connect(lambda: setattr(self, "_worker", None))
        self._worker = worker
        self.status.setText(f"{request.operation}…")
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

    def _finish(self, planned: PlannedContour | _Refused, apply: bool, seconds: float) -> None:
        if isinstance(planned, _Refused):  # bad input: one line in the status, nothing changed
            self.status.setText(str(planned))
            return
        edit = planned.edit
        if not apply:
            self.preview = planned
            self._show_preview(planned.__dict__.pop("layer_data", None))
            volume = edit.after.count * float(np.prod(self.structure_set.geometry.spacing)) / 1000.0
            self.status.setText(f"Preview of {edit.output}: {volume:.2f} cm3 ({seconds:.2f} s). Apply to keep it.")
            return
        self.preview = None
        self._show_preview(None)
        offer_plan(self.host().model, planned)
        outcome = self.send(planned.request)
        self.refresh_inputs()
        if outcome is not None:
            self.status.setText(outcome.message[:1].upper() + outcome.message[1:] + ". Undo takes it back.")
        else:
            self.status.setText("Refused: see the status line.")

    def undo(self) -> None:
        """The session's Undo (the last step, whichever structure it changed)."""
        if self.busy:
            return
        outcome = self.send(rq.Undo())
        self.refresh_inputs()
        if outcome is not None:
            self.status.setText(outcome.message[:1].upper() + outcome.message[1:] + ".")

    def show_stats(self) -> None:
        """Figures of the ticked structures into the status line (computed on a worker thread)."""
        from napari.qt.threading import create_worker

        names = self.checked_inputs()
        if self.structure_set is None or not names:
            self.status.setText("Tick one or more structures for their statistics.")
            return
        if self.busy:
            return
        view = self.host()
        image = view.volume.array if view is not None and view.volume is not None else None
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
            layer = self.viewer.add_labels(data, name=PREVIEW_LAYER, opacity=0.5, **lt.placement(self.host().image_layer))
            layer.colormap = lt.label_colormap([], {1: PREVIEW_RGBA})
        else:
            layer.data = data
