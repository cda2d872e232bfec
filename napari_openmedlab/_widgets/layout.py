"""The widget's layout and its wiring to the widget's methods (no logic here)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QShortcut,
    QVBoxLayout,
    QWidget,
)

from .autosave_warning import AutosaveWarning
from .autoseg_panel import AutosegPanel
from .contouring_panel import ContouringPanel
from .dicom_panel import DicomPanel
from .display_controls import DisplayControls
from .model_panel import ModelPanel
from .structure_list import StructureList
from .view_controls import ViewControls

NEW_TARGET = "<new structure set>"
BOX_TOOLTIP = "2D models: drag a rectangle on a slice to segment what it holds"


class LayerCombo(QComboBox):
    """A combo box that refreshes its layer list whenever it opens."""

    def __init__(self, refresh) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:
        self._refresh()
        super().showPopup()


def build_ui(w) -> None:
    """Create ``w``'s child widgets (as attributes of ``w``) and connect them."""
    w.image_combo = LayerCombo(w._refresh_combos)
    w.target_combo = LayerCombo(w._refresh_combos)
    layers_box = QGroupBox("Layers")
    form = QFormLayout(layers_box)
    form.addRow("Image", w.image_combo)
    form.addRow("Structures from", w.target_combo)
    w.target_combo.setToolTip("A labels layer whose labels become the structures (one per label), or a new set.")

    w.models = ModelPanel()
    prompts_box = QGroupBox("Prompts")
    w.click_check = QCheckBox("Click to segment")
    w.click_check.setChecked(True)
    w.negative_button = QPushButton("Negative clicks (N)")
    w.negative_button.setCheckable(True)
    w.box_button = QPushButton("Box tool")
    w.clear_button = QPushButton("Clear object (Esc)")
    w.propagate_button = QPushButton("Propagate through volume")
    w.propagate_button.setToolTip(
        "2D models: carry the segmented slice (or the boxes and clicks on several slices) through "
        "the volume. The result is the preview: commit it, or undo to go back to the slice."
    )
    w.propagate_button.setEnabled(False)
    w.cancel_propagation_button = QPushButton("Cancel (Esc)")
    w.cancel_propagation_button.setEnabled(False)
    hint = QLabel(
        "Left click: positive. Shift+click or right click: negative. Works on slices in "
        "any orientation and in the 3D view."
    )
    hint.setWordWrap(True)
    row = QHBoxLayout()  # two rows of two: four in one row made the dock wider than 1280-pixel screens allow
    for child in (w.click_check, w.negative_button):
        row.addWidget(child)
    row2 = QHBoxLayout()
    for child in (w.box_button, w.clear_button):
        row2.addWidget(child)
    propagate_row = QHBoxLayout()
    propagate_row.addWidget(w.propagate_button, 1)
    propagate_row.addWidget(w.cancel_propagation_button)
    v = QVBoxLayout(prompts_box)
    v.addLayout(row)
    v.addLayout(row2)
    v.addLayout(propagate_row)
    v.addWidget(hint)

    w.structure_list = StructureList()
    w.contouring = ContouringPanel(w.viewer, lambda: w.session, lambda request: w._request(request))
    w.commit_button = QPushButton("Commit (Ctrl+Enter)")
    w.undo_button = QPushButton("Undo")
    w.redo_button = QPushButton("Redo")
    w.save_button = QPushButton("Save…")
    actions = QHBoxLayout()
    for child in (w.commit_button, w.undo_button, w.redo_button, w.save_button):
        actions.addWidget(child)

    w.banner = QFrame()
    w.banner.setFrameShape(QFrame.StyledPanel)
    w.banner_label = QLabel()
    w.banner_label.setWordWrap(True)
    w.restore_button = QPushButton("Restore")
    w.discard_button = QPushButton("Discard")
    b = QHBoxLayout(w.banner)
    b.addWidget(w.banner_label, 1)
    b.addWidget(w.restore_button)
    b.addWidget(w.discard_button)
    w.banner.hide()
    w.status_label = QLabel("Choose an image layer.")
    w.status_label.setWordWrap(True)

    inner = QWidget()
    lay = QVBoxLayout(inner)
    w.view_controls = ViewControls(w.viewer)  # axial/coronal/sagittal/3D and orientation letters
    w.display_controls = DisplayControls(w.viewer, lambda: w.session.image_layer)  # window, HU readout
    # the sections, top to bottom; other panels are added to w.sections (a QVBoxLayout) after these
    w.sections = QVBoxLayout()
    for child in (w.view_controls, w.display_controls, layers_box, w.models, prompts_box, w.structure_list):
        w.sections.addWidget(child)
    w.sections.addWidget(w.contouring)

    w.dicom = DicomPanel(w)  # Export / Import RTSTRUCT and SEG
    w.sections.addWidget(w.dicom)
    lay.addLayout(w.sections)
    # auto-segmentation (#17) right under the model choice
    w.autoseg = AutosegPanel(w)
    w.sections.insertWidget(w.sections.indexOf(w.models) + 1, w.autoseg)
    lay.addLayout(actions)
    w.autosave_warning = AutosaveWarning(lambda: w.session.autosave_warning)
    lay.addWidget(w.autosave_warning)
    lay.addWidget(w.banner)
    lay.addWidget(w.status_label)
    lay.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(inner)
    outer = QVBoxLayout(w)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    w.setMinimumWidth(360)

    w.image_combo.activated.connect(lambda _: w.set_image_layer(w.image_combo.currentText()))
    w.target_combo.activated.connect(lambda _: w._on_target_chosen())
    w.models.model_requested.connect(w._load_model)
    w.models.weights_missing.connect(w._on_weights_missing)
    w.models.window_changed.connect(w._set_window)
    w.models.speed_changed.connect(w.runner.settings.update)  # applied before the next click
    w.click_check.toggled.connect(lambda on: setattr(w, "click_enabled", on))
    w.negative_button.toggled.connect(w.set_negative)
    w.box_button.clicked.connect(w.activate_box_tool)
    w.clear_button.clicked.connect(w.clear_object)
    w.propagate_button.clicked.connect(w.propagate)
    w.cancel_propagation_button.clicked.connect(w.cancel_propagation)
    w.runner.propagated.connect(w._on_propagated)
    w.runner.busy_changed.connect(w._update_propagate_buttons)
    sl = w.structure_list
    sl.selected.connect(w.select_structure)
    sl.add_requested.connect(w.add_structure)
    sl.remove_requested.connect(w.remove_structure)
    sl.rename_requested.connect(w.rename_structure)
    sl.visible_toggled.connect(w.set_visible)
    sl.lock_toggled.connect(w.lock)
    sl.refine_requested.connect(w.refine)
    sl.classes_loaded.connect(w.add_class_structures)
    sl.export_requested.connect(w.export_classes)
    sl.mode_changed.connect(w.set_commit_mode)
    sl.exclude_locked_changed.connect(w.set_exclude_locked)
    w.commit_button.clicked.connect(w.commit)
    w.undo_button.clicked.connect(w.undo)
    w.redo_button.clicked.connect(w.redo)
    w.save_button.clicked.connect(w._save_dialog)
    w.restore_button.clicked.connect(w.restore_autosave)
    w.discard_button.clicked.connect(w.discard_autosave)
    for keys, slot in (("Ctrl+Return", w.commit), ("Ctrl+Z", w.undo), ("Ctrl+Shift+Z", w.redo)):
        QShortcut(QKeySequence(keys), w, slot, context=Qt.WidgetWithChildrenShortcut)
    for button, tip in TOOLTIPS.items():
        getattr(w, button).setToolTip(tip)
    for combo in w.findChildren(QComboBox):
        # a combo is as wide as its longest entry by default ("Generic (label_1 … label_10)"),
        # which pushed the dock past the width of a 1280-pixel window; long entries now elide
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)


TOOLTIPS = {
    "click_check": "Left click: a positive click. Shift+click or right click: a negative one.",
    "negative_button": "Make every click negative until pressed again (N)",
    "box_button": BOX_TOOLTIP,
    "clear_button": "Forget the current object's clicks, boxes and preview (Esc)",
    "cancel_propagation_button": "Stop the propagation (Esc)",
    "commit_button": "Write the preview into the selected structure, by the commit mode (Ctrl+Enter)",
    "undo_button": "Undo the last click, commit, edit or restore, in any structure (Ctrl+Z)",
    "redo_button": "Redo what was undone (Ctrl+Shift+Z)",
    "save_button": "Save the structures: .omlss keeps everything; a label map (.nii.gz, ...) gets its prompt log beside it",
}
"""Every button says what it does and its keyboard shortcut (napari key bindings in interaction.py)."""
