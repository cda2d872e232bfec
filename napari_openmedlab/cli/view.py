"""``openmedlab view [FILE...]``: napari with the files (or the sample CT) and the widget docked."""

from __future__ import annotations

import os
import sys

PLUGIN, WIDGET = "napari-openmedlab", "Interactive segmentation"
DOCK_NAME = f"{WIDGET} ({PLUGIN})"
"""The dock's title as napari names a plugin widget (the CLI is below the widget layer: it docks the
widget through napari's plugin manifest and never imports ``_widgets``)."""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("view", help="open napari with volumes and the segmentation widget")
    p.add_argument("files", nargs="*", help="NIfTI/NRRD/MHA files or DICOM folders (default: sample CT)")
    p.add_argument("--no-widget", action="store_true", help="do not dock the segmentation widget")
    p.set_defaults(run=run)


# Qt platforms that need no display server.
_HEADLESS_QT = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")


def display_problem() -> str | None:
    """Why napari cannot open a window here, or None. Checked before Qt is imported: without a
    display Qt aborts the whole process with a multi-line dump that says nothing useful."""
    if not sys.platform.startswith("linux"):
        return None  # macOS and Windows always have their window system
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in _HEADLESS_QT:
        return None
    return ("no display to open napari on: set DISPLAY (e.g. ssh -X, or a desktop session), "
            "or run it under a virtual one: xvfb-run -a openmedlab view")


def run(args) -> int:
    from ..io import check_readable

    for path in args.files:  # a clear line now, not a napari traceback once the window is up
        check_readable(path)
    problem = display_problem()
    if problem:
        print(f"openmedlab: error: {problem}", file=sys.stderr)
        return 2
    viewer = open_viewer(args.files, dock_widget=not args.no_widget)
    import napari

    napari.run()
    del viewer
    return 0


def open_viewer(files: list[str], dock_widget: bool = True, show: bool = True, viewer=None):
    """Open ``files`` (the sample CT with its organ labels when empty) and dock the widget.

    ``viewer``: an existing napari viewer to use (``show`` is then ignored); by default a new one.
    Returns the viewer.
    """
    if viewer is None:
        import napari

        viewer = napari.Viewer(show=show, title="napari-openmedlab")
    if files:
        viewer.open(files, plugin="napari-openmedlab", stack=False)
    else:
        viewer.open_sample("napari-openmedlab", "ct_with_organs")
    if dock_widget:
        viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET, tabify=False)
    return viewer
