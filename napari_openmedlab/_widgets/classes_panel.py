"""Label classes table (id, name, colour) with presets, JSON import/export, overlap rule, refine."""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
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

from ..annotation.editing import OVERLAP_RULES
from ..annotation.label_classes import (
    LabelClass,
    LabelClassError,
    default_color,
    generic_classes,
    list_presets,
    load_preset,
    read_classes,
    write_classes,
)

GENERIC = "Generic (label_1 … label_10)"


class ClassesPanel(QGroupBox):
    """The selected row's id is what a commit writes."""

    classes_changed = Signal(object)  # list[LabelClass]
    class_selected = Signal(int)
    overlap_changed = Signal(str)
    refine_requested = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__("Label classes", parent)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([GENERIC, *list_presets()])
        self.import_button = QPushButton("Import…")
        self.export_button = QPushButton("Export…")
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["id", "name", "colour"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.setMinimumHeight(160)
        self.add_button = QPushButton("+ class")
        self.remove_button = QPushButton("− class")
        self.overlap_combo = QComboBox()
        for key, text in OVERLAP_RULES.items():
            self.overlap_combo.addItem(text, key)
        self.refine_button = QPushButton("Refine selected label")
        self.refine_button.setToolTip(
            "Make the selected id's voxels the current object; clicks refine it, commit replaces it."
        )

        top = QHBoxLayout()
        top.addWidget(QLabel("Preset"))
        top.addWidget(self.preset_combo, 1)
        top.addWidget(self.import_button)
        top.addWidget(self.export_button)
        rows = QHBoxLayout()
        rows.addWidget(self.add_button)
        rows.addWidget(self.remove_button)
        rows.addWidget(self.refine_button)
        overlap = QHBoxLayout()
        overlap.addWidget(QLabel("Overlap"))
        overlap.addWidget(self.overlap_combo, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addLayout(rows)
        layout.addLayout(overlap)

        self._classes: list[LabelClass] = []
        self._filling = False
        self.preset_combo.currentTextChanged.connect(self.load_preset)
        self.import_button.clicked.connect(self._import_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self.add_button.clicked.connect(self.add_class)
        self.remove_button.clicked.connect(self.remove_selected)
        self.refine_button.clicked.connect(lambda: self.refine_requested.emit(self.selected_id()))
        self.overlap_combo.currentIndexChanged.connect(lambda _: self.overlap_changed.emit(self.overlap))
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.set_classes(generic_classes())

    # --- table ------------------------------------------------------------------------------------
    def classes(self) -> list[LabelClass]:
        return list(self._classes)

    def set_classes(self, classes: list[LabelClass], emit: bool = True) -> None:
        selected = self.selected_id() if self._classes else None
        self._classes = sorted(classes, key=lambda c: c.id)
        self._filling = True
        try:
            self.table.setRowCount(len(self._classes))
            for row, c in enumerate(self._classes):
                id_item = QTableWidgetItem(str(c.id))
                id_item.setFlags(id_item.flags() & ~Qt.ItemIsEditable)
                color_item = QTableWidgetItem(c.color)
                color_item.setFlags(color_item.flags() & ~Qt.ItemIsEditable)
                color_item.setBackground(QColor(c.color))
                color_item.setForeground(QColor("black" if QColor(c.color).lightness() > 110 else "white"))
                self.table.setItem(row, 0, id_item)
                self.table.setItem(row, 1, QTableWidgetItem(c.name))
                self.table.setItem(row, 2, color_item)
        finally:
            self._filling = False
        ids = [c.id for c in self._classes]
        self.select_id(selected if selected in ids else (ids[0] if ids else 0))
        if emit:
            self.classes_changed.emit(self.classes())

    def selected_id(self) -> int:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if rows and rows[0].row() < len(self._classes):
            return self._classes[rows[0].row()].id
        return self._classes[0].id if self._classes else 1

    def select_id(self, label_id: int) -> None:
        """Select ``label_id``'s row; an id not in the table gets a new row first."""
        ids = [c.id for c in self._classes]
        if label_id not in ids and label_id > 0:
            self.set_classes(
                [*self._classes, LabelClass(label_id, f"label_{label_id}", default_color(label_id))]
            )
            ids = [c.id for c in self._classes]
        if label_id in ids:
            self.table.selectRow(ids.index(label_id))

    def add_class(self) -> None:
        new_id = max((c.id for c in self._classes), default=0) + 1
        self.set_classes([*self._classes, LabelClass(new_id, f"label_{new_id}", default_color(new_id))])
        self.select_id(new_id)

    def remove_selected(self) -> None:
        victim = self.selected_id()
        self.set_classes([c for c in self._classes if c.id != victim])

    @property
    def overlap(self) -> str:
        return self.overlap_combo.currentData()

    def set_overlap(self, rule: str) -> None:
        if rule not in OVERLAP_RULES:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP_RULES)}")
        self.overlap_combo.setCurrentIndex(list(OVERLAP_RULES).index(rule))

    def _on_selection(self) -> None:
        if not self._filling:
            self.class_selected.emit(self.selected_id())

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1:
            return
        c = self._classes[item.row()]
        name = item.text().strip() or c.name
        self._classes[item.row()] = LabelClass(c.id, name, c.color)
        self.classes_changed.emit(self.classes())

    def _on_double_click(self, row: int, column: int) -> None:
        if column != 2:
            return
        c = self._classes[row]
        color = QColorDialog.getColor(QColor(c.color), self, f"Colour of {c.name}")
        if color.isValid():
            self._classes[row] = LabelClass(c.id, c.name, color.name())
            self.set_classes(self._classes)

    # --- presets and files ------------------------------------------------------------------------
    def load_preset(self, name: str) -> None:
        classes = generic_classes() if name == GENERIC else load_preset(name)
        if self.preset_combo.currentText() != name:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentText(name)
            self.preset_combo.blockSignals(False)
        self.set_classes(classes)

    def import_json(self, path) -> list[LabelClass]:
        classes = read_classes(path)
        self.set_classes(classes)
        return classes

    def export_json(self, path):
        return write_classes(self._classes, path)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import label classes", "", "JSON (*.json)")
        if path:
            try:
                self.import_json(path)
            except LabelClassError as err:
                self.setToolTip(str(err))
                from napari.utils.notifications import show_warning

                show_warning(str(err))

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export label classes", "classes.json", "JSON (*.json)")
        if path:
            self.export_json(path)
