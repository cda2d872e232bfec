"""The "Auto-segment" section: a trained nnU-Net v2 model folder drafts every class of the image.

The panel only gathers the folder and shows progress: the work is
:class:`napari_openmedlab.engines.autoseg.AutoSegmenter` on a background thread (the UI never
blocks; Cancel stops it within a network layer's time). The draft enters the widget's
:class:`~napari_openmedlab.annotation.AnnotationSession` as one ``ImportStructures`` request (one
structure per class found, named from ``dataset.json``; one undo takes the whole draft back), so it
shows in the structure list and is refined with clicks and locked like any hand-made structure.
"""

from __future__ import annotations

import threading
from pathlib import Path

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)


class _Relay(QObject):
    """Carries the worker thread's news to the UI thread (queued signals)."""

    progress = Signal(float, str)
    finished = Signal(object, object)  # (result, the image layer it was made for)
    failed = Signal(str)


class AutosegPanel(QGroupBox):
    """Folder picker, device, Auto-segment / Cancel, progress; drives ``widget`` (the dock widget)."""

    def __init__(self, widget) -> None:
        super().__init__("Auto-segment (nnU-Net v2 model folder)")
        self.widget = widget
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("results folder: plans.json, dataset.json, fold_*/")
        self.browse_button = QPushButton("Browse…")
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.run_button = QPushButton("Auto-segment")
        self.run_button.setToolTip("Draft every class of the model on the current image; then refine with clicks.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.browse_button)
        actions = QHBoxLayout()
        actions.addWidget(self.device_combo)
        actions.addWidget(self.run_button, 1)
        actions.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addLayout(actions)
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.status)

        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.finished.connect(self._on_finished)
        self._relay.failed.connect(self._on_failed)
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._current = [self._cancel]  # the running job's cancel flag, reachable after deletion
        # False once the widget is closed (shutdown): the running job's news is dropped. Not tied to
        # the panel's destroyed signal: a Python slot run while the garbage collector deletes the
        # panel crashed the process.
        self._alive = [True]
        self._segmenter = None  # kept while the folder and device stay the same
        self._segmenter_key = None
        self.last_names: list[str] = []  # the structures the last draft gave
        self.browse_button.clicked.connect(self._browse)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    # --- public: what the buttons call ----------------------------------------------------------
    def set_folder(self, path) -> None:
        self.folder_edit.setText(str(path))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> bool:
        """Start auto-segmenting the widget's image; False (with a message) when it cannot start."""
        session = self.widget.session
        if self.running:
            return False
        if session.volume is None or session.image_layer is None:
            self._say("Choose an image layer first.")
            return False
        folder = self.folder_edit.text().strip()
        if not folder:
            self._say("Choose a model folder (an nnU-Net v2 results folder).")
            return False
        self._cancel = self._current[0] = threading.Event()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setValue(0)
        self._say("Reading the model folder…")
        args = (Path(folder), self.device_combo.currentText(), session.volume, session.image_layer, self._cancel)
        self._thread = threading.Thread(target=self._work, args=args, name="openmedlab-autoseg", daemon=True)
        self._thread.start()
        return True

    def cancel(self) -> None:
        if self.running:
            self._cancel.set()
            self._say("Cancelling…")

    def shutdown(self) -> None:
        """The widget is closing: stop the running job and drop its news (no widget touched after)."""
        self._alive[0] = False
        self._current[0].set()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the run ends (tests, scripts); True if it ended. Qt events are processed."""
        import time

        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.running or not self.run_button.isEnabled():
            if time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.01)
        return True

    # --- worker thread --------------------------------------------------------------------------
    def _work(self, folder: Path, device: str, volume, image_layer, cancel: threading.Event) -> None:
        from ..engines.autoseg import AutoSegmenter
        from ..engines.base import Cancelled
        from ..models.nnunet import read_model_folder

        try:
            key = (str(folder.resolve()), device)
            if self._segmenter_key != key:
                self._segmenter, self._segmenter_key = None, None
                self._segmenter = AutoSegmenter(read_model_folder(folder), device)
                self._segmenter_key = key
            result = self._segmenter.predict(volume, progress=self._relay.progress.emit, cancel=cancel)
        except Cancelled:
            self._relay.failed.emit("Auto-segmentation cancelled; nothing was changed.")
        except Exception as err:  # shown in the panel: the UI must stay usable whatever happened
            from ..cli._errors import EXPECTED_ERRORS

            expected = isinstance(err, EXPECTED_ERRORS())
            self._relay.failed.emit(str(err) if expected else f"{type(err).__name__}: {err}")
        else:
            self._relay.finished.emit(result, image_layer)

    # --- UI thread ------------------------------------------------------------------------------
    def _on_progress(self, fraction: float, message: str) -> None:
        if not self._alive[0]:
            return
        self.progress_bar.setValue(int(round(1000 * fraction)))
        self._say(message)

    def _on_failed(self, message: str) -> None:
        if not self._alive[0]:
            return
        self._done()
        self._say(message)

    def _on_finished(self, result, image_layer) -> None:
        from ..annotation import ImportStructures, structures_from_autoseg

        if not self._alive[0]:
            return
        self._done()
        session = self.widget.session
        if image_layer is not session.image_layer:
            self._say("The image changed while auto-segmenting; the draft was dropped.")
            return
        draft = structures_from_autoseg(result)
        names = draft.names()
        if not names:
            self._say(f"Draft in {result.seconds:.1f}s: the model found nothing on this image.")
            return
        outcome = self.widget._request(ImportStructures.from_structure_set(draft, source="auto-segmentation"))
        if outcome is None:  # refused (the widget's status line says why); nothing changed
            self._say("The draft could not enter the structure set; see the status line.")
            return
        self.last_names = names
        if session.selected is None or session.selected not in names:
            self.widget.select_structure(names[0])
        self._say(
            f"Draft in {result.seconds:.1f}s: {', '.join(names)}. Refine a structure from the list with "
            "clicks, lock the finished ones; one undo removes the draft."
        )

    def _done(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "nnU-Net v2 results folder", self.folder_edit.text())
        if folder:
            self.set_folder(folder)
