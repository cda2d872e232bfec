"""A persistent warning while autosaving fails: the user must know the work is only in memory.

The autosaver writes on a background thread and keeps its state (``Autosaver.warning``); this
label polls it from the Qt thread, so no signal crosses threads, and stays visible until a save
succeeds. Host widgets give it a function returning the current autosaver (sessions come and go).
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel

POLL_MS = 500
STYLE = "QLabel { background: #8b1a1a; color: white; padding: 4px; font-weight: bold; }"


class AutosaveWarning(QLabel):
    """Shows ``autosaver.warning`` ("autosave failed: ...; your work is only in memory") while set."""

    def __init__(self, autosaver: Callable[[], object | None], parent=None) -> None:
        super().__init__(parent)
        self._autosaver = autosaver
        self.setWordWrap(True)
        self.setStyleSheet(STYLE)
        self.hide()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(POLL_MS)

    def refresh(self) -> None:
        saver = self._autosaver()
        text = getattr(saver, "warning", None) if saver is not None else None
        if text:
            if text != self.text():
                self.setText(text)
            self.show()
        else:
            self.hide()

    @property
    def showing(self) -> bool:
        return not self.isHidden() and bool(self.text())
