"""At each start (CLI command, widget): remove what killed processes left half-written.

Temporary files carry the writer's pid (``io.atomic``), so only those of dead processes go; the
places searched are the ones this package writes to on its own: the weights cache (partial
downloads and conversions) and the recovery folder (partial autosave generations). Temporaries
beside a user's output file are removed at the next write of that file.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def remove_stale_temporaries() -> list[Path]:
    """Best effort, never raises: cleaning up must not stop the program from starting."""
    from .annotation.autosave import clean_recovery_root
    from .models.weights import clean_cache

    removed: list[Path] = []
    for clean in (clean_cache, clean_recovery_root):
        try:
            removed += clean()
        except Exception as err:  # e.g. an unreadable cache folder: the command itself will say
            logger.debug("cleaning up stale temporaries failed: %s", err)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return removed
