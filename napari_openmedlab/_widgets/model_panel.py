"""Model chooser: model, device, the weights' status (download or choose a file), 2D windows."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..models.device import DEVICE_CHOICES
from ..models.registry import MODELS, get_spec
from ..models.weights import WeightsError, find_weights
from .server_choice import ServerChoice
from .worker import Downloader

WINDOW_PRESETS: dict[str, tuple[str | None, tuple[float, float] | None]] = {
    "automatic (CT: soft tissue, else MR)": (None, None),
    "CT soft tissue (W400 L40)": ("soft_tissue", (400.0, 40.0)),
    "CT liver (W150 L30)": ("liver", (150.0, 30.0)),
    "CT mediastinum (W350 L50)": ("mediastinum", (350.0, 50.0)),
    "CT head and neck (W350 L40)": ("head_neck", (350.0, 40.0)),
    "CT brain (W80 L40)": ("brain", (80.0, 40.0)),
    "CT lung (W1500 L-600)": ("lung", (1500.0, -600.0)),
    "CT bone (W1800 L400)": ("bone", (1800.0, 400.0)),
    "MR (0.5-99.5 percentiles)": ("mri", None),
}
"""What the 2D models see: label -> (the 2D engine's ``window`` value, (width, level) HU or None).

The names are the presets of ``models.sam_med2d.preprocess.CT_WINDOWS`` (a test keeps them equal);
the image layer's contrast follows the chosen CT window, so the user sees what the model sees."""


def window_limits(width_level: tuple[float, float] | None) -> tuple[float, float] | None:
    """(low, high) display limits of a (width, level) window."""
    if width_level is None:
        return None
    width, level = width_level
    return level - width / 2.0, level + width / 2.0


NO_BOXES_3D = "SAM-Med3D takes clicks only: box prompts are not supported."


def _megabytes(n: int | None) -> str:
    if not n:
        return "size unknown"
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class ModelPanel(QGroupBox):
    """Emits :attr:`model_requested` when a model with weights present should be (re)loaded."""

    model_requested = Signal(str, object, str)  # name, checkpoint path or None, device
    weights_missing = Signal(str)  # name of a chosen model that cannot be loaded yet
    window_changed = Signal(object)  # the 2D engine's window value (preset name, "mri" or None)
    #: engine settings {"encoder": "fast"|"reference", "cpu_threads": n (0 = automatic)}
    speed_changed = Signal(dict)

    def __init__(self, parent=None) -> None:
        super().__init__("Model", parent)
        self.checkpoints: dict[str, str | None] = {}
        self.downloader = Downloader(self)
        self.downloader.progress.connect(self._on_download_progress)
        self.downloader.finished.connect(self._on_download_finished)

        self.model_combo = QComboBox()
        self.model_combo.addItems(list(MODELS))
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.weights_label = QLabel()
        self.weights_label.setWordWrap(True)
        self.weights_label.setTextInteractionFlags(Qt.TextSelectableByMouse | Qt.LinksAccessibleByMouse)
        self.weights_label.setOpenExternalLinks(True)
        self.download_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel")
        self.choose_button = QPushButton("Choose file…")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.note_label = QLabel()
        self.note_label.setWordWrap(True)
        self.window_combo = QComboBox()
        self.window_combo.addItems(list(WINDOW_PRESETS))
        self.window_combo.setCurrentText("CT soft tissue (W400 L40)")
        self.window_label = QLabel("Window (2D models)")
        self.encoder_combo = QComboBox()
        self.encoder_combo.addItems(["fast", "reference"])
        self.encoder_combo.setToolTip(
            "SAM-Med3D image encoder: fast (default) equals the official one to ~1e-6; reference "
            "is the official computation, every mask voxel-equal to it, ~30x slower on a CPU")
        self.encoder_label = QLabel("Encoder")
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(0, 256)
        self.threads_spin.setSpecialValueText("automatic")
        self.threads_spin.setToolTip("CPU threads per click; automatic uses the cores other "
                                     "programs leave free")

        form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)
        form.addRow(self.window_label, self.window_combo)
        form.addRow(self.encoder_label, self.encoder_combo)
        form.addRow("Threads", self.threads_spin)
        buttons = QHBoxLayout()
        for b in (self.download_button, self.cancel_button, self.choose_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.weights_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.note_label)
        self.server = ServerChoice()  # issue #18: the engine on an `openmedlab serve` box instead
        layout.addWidget(self.server)
        self.server.changed.connect(self.request_load)

        self.model_combo.currentTextChanged.connect(self._on_model_changed)
        self.device_combo.currentTextChanged.connect(lambda _: self.request_load())
        self.window_combo.currentTextChanged.connect(lambda t: self.window_changed.emit(self.window))
        self.encoder_combo.currentTextChanged.connect(lambda _: self.speed_changed.emit(self.speed))
        self.threads_spin.valueChanged.connect(lambda _: self.speed_changed.emit(self.speed))
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self.downloader.cancel)
        self.choose_button.clicked.connect(self._choose_file)
        self._updating = False
        self.refresh()

    # --- state ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.model_combo.currentText()

    @property
    def device(self) -> str:
        return self.device_combo.currentText()

    @property
    def speed(self) -> dict:
        """Engine settings for speed: the SAM-Med3D encoder and the CPU thread count."""
        return {"encoder": self.encoder_combo.currentText(), "cpu_threads": self.threads_spin.value()}

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoints.get(self.name)

    @property
    def window(self) -> str | None:
        """The 2D engine's ``window`` value: a CT preset name, ``"mri"`` or None (automatic)."""
        return WINDOW_PRESETS[self.window_combo.currentText()][0]

    @property
    def window_display(self) -> tuple[float, float] | None:
        """(low, high) HU of the chosen CT window, for the image layer's contrast; None otherwise."""
        return window_limits(WINDOW_PRESETS[self.window_combo.currentText()][1])

    def weights_present(self, name: str | None = None) -> bool:
        spec = get_spec(name or self.name)
        if not spec.needs_weights or self.server.active:  # a server holds its own weights
            return True
        try:
            return find_weights(spec, self.checkpoints.get(spec.name)) is not None
        except WeightsError:
            return False

    def set_model(self, name: str, checkpoint=None, device: str | None = None) -> bool:
        """Select a model (and optionally a local checkpoint); True when it can be loaded now."""
        get_spec(name)  # a clear error for an unknown name
        if checkpoint is not None:
            self.checkpoints[name] = str(checkpoint)
        self._updating = True
        try:
            self.model_combo.setCurrentText(name)
            if device is not None:
                self.device_combo.setCurrentText(device)
        finally:
            self._updating = False
        return self.request_load()

    def request_load(self) -> bool:
        present = self.refresh()
        if not self._updating:
            if present:
                self.model_requested.emit(self.name, self.checkpoint, self.device)
            else:
                self.weights_missing.emit(self.name)
        return present

    # --- display ----------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Update the weights line and buttons; returns whether the weights are there."""
        spec = get_spec(self.name)
        two_d = spec.family == "2d"
        self.window_combo.setVisible(two_d)
        self.window_label.setVisible(two_d)
        self.encoder_combo.setVisible(spec.family == "3d")
        self.encoder_label.setVisible(spec.family == "3d")
        self.note_label.setText(
            NO_BOXES_3D
            if spec.family == "3d"
            else "Clicks and boxes (draw a box on a slice with the box tool)."
            if two_d
            else "Weight-free: clicks only, runs anywhere."
        )
        downloading = self.downloader.active == spec.name
        self.progress.setVisible(downloading)
        self.cancel_button.setVisible(downloading)
        if self.server.active or not spec.needs_weights:
            self.weights_label.setText(
                f"Runs on {self.server.describe()}." if self.server.active else "No weights needed.")
            self.download_button.hide()
            self.choose_button.hide()
            return True
        try:
            path = find_weights(spec, self.checkpoint)
            problem = None
        except WeightsError as err:
            path, problem = None, str(err)
        self.choose_button.show()
        if path is not None:
            self.weights_label.setText(f"Weights present: {path}")
            self.download_button.hide()
            return True
        where = f'<a href="{spec.source.split(" ")[0]}">{spec.source}</a>'
        text = problem or f"Weights for {spec.name} are missing."
        if spec.url:
            text += f" Download them ({_megabytes(spec.size_bytes)}) or choose a local file."
        else:
            text += f" They have no direct download; get {spec.filename} from {where}, then choose it."
        self.weights_label.setText(text)
        self.download_button.setText(f"Download ({_megabytes(spec.size_bytes)})")
        self.download_button.setVisible(bool(spec.url) and not downloading)
        return False

    def _on_model_changed(self, _name: str) -> None:
        if not self._updating:
            self.request_load()

    # --- weights ----------------------------------------------------------------------------------
    def start_download(self) -> None:
        spec = get_spec(self.name)
        if not spec.url or self.downloader.active:
            return
        self.progress.setRange(0, 0)
        self.downloader.start(spec.name)
        self.refresh()

    def _on_download_progress(self, received, total) -> None:
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * received / total))
            self.progress.setFormat(f"{received / 1e6:.0f} / {total / 1e6:.0f} MB")
        else:
            self.progress.setFormat(f"{received / 1e6:.0f} MB")

    def _on_download_finished(self, outcome) -> None:
        if outcome.error is not None:
            self.refresh()
            self.weights_label.setText(f"{self.weights_label.text()}\nDownload failed: {outcome.error}")
            return
        self.request_load()

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"Checkpoint for {self.name}",
            str(Path.home()),
            "Checkpoints (*.pth *.pt *.ckpt *.safetensors);;All files (*)",
        )
        if path:
            self.set_model(self.name, checkpoint=path)
