"""The "Server" choice of the model panel: run the chosen model on an ``openmedlab serve`` box.

With it ticked, the widget's engine is a :class:`~napari_openmedlab.engines.remote.RemoteEngine`
(URL + API key file); nothing is needed locally (no weights, no GPU). Why a connection fails
(unreachable, at capacity, key refused, model not offered) is the engine's one-line
``RemoteError``, shown in the status line like any failed load.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)


class ServerChoice(QWidget):
    """``use`` + ``url`` + ``key_file``; emits :attr:`changed` when the user applies a change."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.use_box = QCheckBox("Run on a server (openmedlab serve)")
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("http://gpu-box:8765")
        self.key_edit = QLineEdit()
        self.key_edit.setPlaceholderText("API key file")
        self.key_button = QPushButton("…")
        self.key_button.setMaximumWidth(30)
        self.connect_button = QPushButton("Connect")
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit)
        key_row.addWidget(self.key_button)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.use_box)
        form.addRow("URL", self.url_edit)
        form.addRow("API key", key_row)
        form.addRow(self.connect_button)
        self.use_box.toggled.connect(self._on_toggled)
        self.connect_button.clicked.connect(self.changed.emit)
        self.key_button.clicked.connect(self._choose_key)
        self._on_toggled(False)

    @property
    def active(self) -> bool:
        return self.use_box.isChecked()

    def set_server(self, url: str | None, key_file=None) -> None:
        """Use ``url`` with the key in ``key_file`` (None: back to a local engine); emits changed."""
        self.use_box.blockSignals(True)
        self.use_box.setChecked(bool(url))
        self.use_box.blockSignals(False)
        self._show_fields(bool(url))
        if url:
            self.url_edit.setText(url)
            self.key_edit.setText(str(key_file or ""))
        self.changed.emit()

    def factory(self):
        """An engine factory with the local one's signature: ``(name, checkpoint, device)``."""
        url, key_file = self.url_edit.text().strip(), self.key_edit.text().strip()

        def make(name, _checkpoint, _device):
            from ..engines.remote import RemoteEngine, RemoteError, read_api_key

            if not url:
                raise RemoteError("enter the server's URL (http://host:port)")
            if not key_file:
                raise RemoteError("choose the server's API key file")
            return RemoteEngine(url, read_api_key(key_file), name)

        return make

    def describe(self) -> str:
        return f"the server at {self.url_edit.text().strip() or '?'}"

    def _on_toggled(self, on: bool) -> None:
        self._show_fields(on)
        if not on or self.url_edit.text().strip():
            self.changed.emit()

    def _show_fields(self, on: bool) -> None:
        for w in (self.url_edit, self.key_edit, self.key_button, self.connect_button):
            w.setEnabled(on)

    def _choose_key(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Server API key file", str(Path.home()), "All files (*)")
        if path:
            self.key_edit.setText(path)
