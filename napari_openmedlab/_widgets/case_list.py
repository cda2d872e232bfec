"""The case list dock of ``openmedlab annotate DATASET_DIR`` (issue #19): a data set, case after case.

A view of a headless :class:`~napari_openmedlab.dataset.AnnotationProject`: one row per case (name,
status, structures, time spent, last edit), a status filter, Previous / Next / Next undone and
"Mark done" (with shortcuts). Opening a case saves the open one first (atomically, through
``AnnotationProject.save_case``), then shows the project's session of the new case in the
segmentation widget (:meth:`SegmentationWidget.adopt_session`); the widget's requests go through
the case so the effort (clicks, boxes, strokes, seconds) is counted.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QShortcut,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..dataset.project import STATUSES, AnnotationProject
from ..layers import image_layer_data

ALL = "all cases"
COLUMNS = ("case", "status", "structures", "time", "last edit")
SHORTCUTS = {"previous": "Ctrl+Alt+Left", "next": "Ctrl+Alt+Right", "undone": "Ctrl+Alt+N",
             "done": "Ctrl+Alt+D"}


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds or 0))
    return f"{seconds // 60} min {seconds % 60:02d} s"


class CaseListWidget(QWidget):
    """Dock it with the viewer; then :meth:`attach` the segmentation widget and :meth:`open_project`."""

    def __init__(self, napari_viewer, parent=None) -> None:  # the name napari passes the viewer by
        super().__init__(parent)
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.segmentation = None
        self.project: AnnotationProject | None = None
        self.work = None  # the open case (dataset.project.CaseWork)
        self._layers: list = []  # the open case's image layer (and its structures layer)

        self.title = QLabel("No data set open (openmedlab annotate DATASET_DIR).")
        self.title.setWordWrap(True)
        self.filter_combo = QComboBox()
        self.filter_combo.addItems([ALL, *STATUSES])
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setMinimumHeight(160)  # several cases visible even under the tall segmentation dock
        self.buttons = {}
        row = QHBoxLayout()
        for key, text in (("previous", "Previous"), ("next", "Next"), ("undone", "Next undone"),
                          ("done", "Mark done")):
            b = QPushButton(text)
            b.setToolTip(f"{text} ({SHORTCUTS[key]})")
            row.addWidget(b)
            self.buttons[key] = b
            QShortcut(QKeySequence(SHORTCUTS[key]), self, context=Qt.ApplicationShortcut).activated.connect(
                b.click)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.filter_combo)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addWidget(self.message)

        self.buttons["previous"].clicked.connect(lambda: self.step(-1))
        self.buttons["next"].clicked.connect(lambda: self.step(1))
        self.buttons["undone"].clicked.connect(lambda: self.step(1, undone=True))
        self.buttons["done"].clicked.connect(lambda: self.mark("done"))
        self.filter_combo.currentTextChanged.connect(lambda _: self.refresh())
        self.table.cellDoubleClicked.connect(lambda r, _c: self.open_case(self.table.item(r, 0).text()))

    # --- set-up -----------------------------------------------------------------------------------
    def attach(self, segmentation) -> None:
        """The segmentation widget that shows the open case."""
        self.segmentation = segmentation

    def open_project(self, root, classes=None) -> AnnotationProject:
        """Open the data set ``root`` (a lock: a second viewer gets a clear error) and its first undone case."""
        self.project = AnnotationProject.open(root, classes)
        self.title.setText(f"{self.project.root} — {len(self.project.case_names())} cases")
        self.refresh()
        first = self.project.next_case(None, undone=True) or next(iter(self.project.case_names()), None)
        if first is not None:
            self.open_case(first)
        return self.project

    @property
    def current(self) -> str | None:
        return self.work.name if self.work is not None else None

    # --- the list -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.project is None:
            return
        wanted = self.filter_combo.currentText()
        names = self.project.cases(None if wanted == ALL else wanted)
        self.table.setRowCount(len(names))
        for r, name in enumerate(names):
            rec = self.project.record(name)
            structures = rec.get("structures") or []
            if name == self.current:  # the open case: what is there now, not what was saved
                structures = [s.name for s in self.work.structures if not s.mask.empty]
            cells = (name, rec["status"], ", ".join(structures) or "—", _minutes(rec.get("seconds", 0.0)),
                     (rec.get("last_edit") or "—").replace("T", " ")[:19])
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if name == self.current:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
            if name == self.current:
                self.table.selectRow(r)
        self.table.resizeColumnsToContents()

    # --- moving between cases -------------------------------------------------------------------------
    def step(self, direction: int, undone: bool = False) -> str | None:
        """Open the previous (-1) or next (+1) case, or the next todo / in-progress one."""
        if self.project is None:
            return None
        self.save_current()  # its status may change what "undone" means
        name = self.project.next_case(self.current, undone=undone, step=direction)
        if name is None:
            self.message.setText("No undone case left." if undone else "No case in that direction.")
            return None
        return self.open_case(name)

    def mark(self, status: str) -> None:
        if self.work is not None:
            self.project.set_status(self.work.name, status)
            self.message.setText(f"{self.work.name}: {status}.")
            self.refresh()

    def save_current(self) -> None:
        """Save the open case's structure set (atomically) and the project state."""
        if self.work is None:
            return
        view = self.segmentation.session if self.segmentation is not None else None
        if view is not None and view.model is not None and view.model.volume is self.work.volume:
            self.work.session = view.model  # the widget may have replaced it (a loaded structure file)
        self.project.save_case(self.work)

    def open_case(self, name: str) -> str:
        """Save the open case, then show ``name`` in the segmentation widget."""
        if name == self.current:
            return name
        self.save_current()
        work = self.project.open_case(name)
        old_layers, self._layers = self._layers, []
        data, kwargs, _ = image_layer_data(work.volume, name=name)
        seg = self.segmentation
        if seg is not None:
            seg._building = True  # the new image must not start a session of its own
        try:
            layer = self.viewer.add_image(data, **kwargs)
        finally:
            if seg is not None:
                seg._building = False
        self.work = work
        if seg is not None:
            seg.adopt_session(layer, work.session)
            seg.session.handler = self._handle
            self._layers = [layer, seg.session.labels_layer]
        else:
            self._layers = [layer]
        for old in old_layers:  # after the new case is shown, so the widget never points at nothing
            if old is not None and old in self.viewer.layers:
                self.viewer.layers.remove(old)
        note = " (restored from its autosave)" if work.restored_from_autosave else ""
        self.message.setText(f"{name}: {self.project.status(name)}{note}.")
        self.refresh()
        return name

    def _handle(self, request):
        """The widget's requests, through the case (effort counting); follows a replaced session."""
        view = self.segmentation.session
        if view.model is not self.work.session and view.model.volume is self.work.volume:
            self.work.session = view.model
        outcome = self.work.handle(request)
        self.refresh()
        return outcome

    def close_project(self) -> None:
        if self.project is not None:
            self.save_current()
            self.project.close()
            self.project = None

    def closeEvent(self, event) -> None:
        self.close_project()
        super().closeEvent(event)
