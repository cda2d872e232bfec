"""The structure list: one row per structure of the session (id, name, colour, shown, locked, cm3).

A view only: :meth:`StructureList.set_rows` fills it from the session, and every user action is a
signal the widget turns into a request. Presets and class tables (JSON) name the structures: loading
one adds an empty structure per class.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..annotation.label_classes import (
    LabelClassError,
    generic_classes,
    list_presets,
    load_preset,
    read_classes,
)
from ..annotation.requests import COMMIT_MODES

GENERIC = "Generic (label_1 … label_10)"
COLUMNS = ("id", "name", "colour", "shown", "locked", "cm³")
MODE_TEXT = {"add": "Add to the structure", "replace": "Replace the structure", "subtract": "Subtract from it"}


class StructureList(QGroupBox):
    """Signals carry structure names; the widget sends the matching requests."""

    selected = Signal(object)  # name or None
    add_requested = Signal()
    remove_requested = Signal(str)
    rename_requested = Signal(str, str)
    visible_toggled = Signal(str, bool)
    lock_toggled = Signal(str, bool)
    refine_requested = Signal(str)
    classes_loaded = Signal(object)  # list[LabelClass]: add their structures
    export_requested = Signal(str)  # a path for the class table
    mode_changed = Signal(str)
    exclude_locked_changed = Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__("Structures", parent)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(["—", GENERIC, *list_presets()])
        self.preset_combo.setToolTip("Add one empty structure per class of a preset (names, colours, codes).")
        self.import_button = QPushButton("Import…")
        self.export_button = QPushButton("Export…")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.Stretch if column == 1 else QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(180)
        self.add_button = QPushButton("+ structure")
        self.remove_button = QPushButton("− structure")
        self.refine_button = QPushButton("Refine selected")
        self.refine_button.setToolTip("Make the selected structure the current object; clicks refine it.")
        self.mode_combo = QComboBox()
        for key in COMMIT_MODES:
            self.mode_combo.addItem(MODE_TEXT[key], key)
        self.mode_combo.setCurrentIndex(list(COMMIT_MODES).index("add"))
        self.exclude_check = QCheckBox("Exclude locked structures")
        self.exclude_check.setChecked(True)
        self.exclude_check.setToolTip("Locked structures' voxels are removed from the preview and the commit.")

        top = QHBoxLayout()
        top.addWidget(QLabel("Preset"))
        top.addWidget(self.preset_combo, 1)
        top.addWidget(self.import_button)
        top.addWidget(self.export_button)
        rows = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.refine_button):
            rows.addWidget(b)
        commit = QHBoxLayout()
        commit.addWidget(QLabel("Commit"))
        commit.addWidget(self.mode_combo, 1)
        commit.addWidget(self.exclude_check)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addLayout(rows)
        layout.addLayout(commit)

        self._names: list[str] = []
        self._filling = False
        self.preset_combo.activated.connect(lambda _: self.load_preset(self.preset_combo.currentText()))
        self.import_button.clicked.connect(self._import_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self.add_button.clicked.connect(self.add_requested.emit)
        self.remove_button.clicked.connect(lambda: self._emit_for_selected(self.remove_requested))
        self.refine_button.clicked.connect(lambda: self._emit_for_selected(self.refine_requested))
        self.mode_combo.currentIndexChanged.connect(lambda _: self.mode_changed.emit(self.mode))
        self.exclude_check.toggled.connect(self.exclude_locked_changed.emit)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)

    # --- filling --------------------------------------------------------------------------------
    def set_rows(self, rows: list[dict], selected: str | None) -> None:
        """Show ``rows`` (see ``SessionView.rows``) and select ``selected``; emits nothing."""
        self._filling = True
        self.table.blockSignals(True)
        try:
            self._names = [r["name"] for r in rows]
            self.table.setRowCount(len(rows))
            for i, r in enumerate(rows):
                cells = [
                    _item(str(r["label_id"]), editable=False),
                    _item(r["name"], editable=True),
                    _item("", editable=False),
                    _check(r["visible"]),
                    _check(r["locked"]),
                    _item(f"{r['cm3']:.2f}", editable=False),
                ]
                color = QColor(r["color"])
                cells[2].setBackground(color)
                cells[2].setToolTip(r["color"])
                for column, cell in enumerate(cells):
                    self.table.setItem(i, column, cell)
            if selected in self._names:
                self.table.selectRow(self._names.index(selected))
            else:
                self.table.clearSelection()
        finally:
            self.table.blockSignals(False)
            self._filling = False

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if rows and rows[0].row() < len(self._names):
            return self._names[rows[0].row()]
        return None

    def select_name(self, name: str) -> None:
        """Select ``name``'s row as a user click does (emits :attr:`selected`)."""
        self.table.selectRow(self._names.index(name))

    @property
    def mode(self) -> str:
        return self.mode_combo.currentData()

    def set_mode(self, mode: str) -> None:
        if mode not in COMMIT_MODES:
            raise ValueError(f"commit mode is one of {', '.join(COMMIT_MODES)}")
        self.mode_combo.setCurrentIndex(list(COMMIT_MODES).index(mode))

    # --- user actions ---------------------------------------------------------------------------
    def _emit_for_selected(self, signal) -> None:
        name = self.selected_name()
        if name is not None:
            signal.emit(name)

    def _on_selection(self) -> None:
        if not self._filling:
            self.selected.emit(self.selected_name())

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.row() >= len(self._names):
            return
        name = self._names[item.row()]
        if item.column() == 1:
            new = item.text().strip()
            if new and new != name:
                self.rename_requested.emit(name, new)
        elif item.column() == 3:
            self.visible_toggled.emit(name, item.checkState() == Qt.Checked)
        elif item.column() == 4:
            self.lock_toggled.emit(name, item.checkState() == Qt.Checked)

    def load_preset(self, name: str) -> None:
        if name == "—":
            return
        self.classes_loaded.emit(generic_classes() if name == GENERIC else load_preset(name))

    def import_json(self, path) -> list:
        classes = read_classes(path)
        self.classes_loaded.emit(classes)
        return classes

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a class table", "", "JSON (*.json)")
        if path:
            try:
                self.import_json(path)
            except LabelClassError as err:
                from napari.utils.notifications import show_warning

                show_warning(str(err))

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the class table", "classes.json", "JSON (*.json)")
        if path:
            self.export_requested.emit(path)


def _item(text: str, editable: bool) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if not editable:
        item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


def _check(on: bool) -> QTableWidgetItem:
    item = QTableWidgetItem()
    item.setFlags((item.flags() | Qt.ItemIsUserCheckable) & ~Qt.ItemIsEditable)
    item.setCheckState(Qt.Checked if on else Qt.Unchecked)
    return item
