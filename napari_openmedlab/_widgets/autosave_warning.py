"""A persistent warning while autosaving fails: the user must know the work is only in memory.

The session keeps the state (``AnnotationSession.autosave_warning``: "autosave failed: <cause>;
your work is only in memory" after a failed autosave, None after a good one); this label polls it
from the Qt thread and stays visible until a save succeeds. The host gives it a function returning
the current text (sessions come and go with the image).
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel

POLL_MS = 500
STYLE = "QLabel { background: #8b1a1a; color: white; padding: 4px; font-weight: bold; }"


class AutosaveWarning(QLabel):
    """Shows the text ``warning()`` returns while it is not empty."""

    def __init__(self, warning: Callable[[], str | None], parent=None) -> None:
        super().__init__(parent)
        self._warning = warning
        self.setWordWrap(True)
        self.setStyleSheet(STYLE)
        self.hide()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(POLL_MS)

    def refresh(self) -> None:
        text = self._warning()
        if text:
            if text != self.text():
                self.setText(text)
            self.show()
        else:
            self.hide()

    @property
    def showing(self) -> bool:
        return not self.isHidden() and bool(self.text())
