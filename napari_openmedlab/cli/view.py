"""``openmedlab view [FILE...]``: napari with the files (or the sample CT) and the widget docked."""

from __future__ import annotations

PLUGIN, WIDGET = "napari-openmedlab", "Interactive segmentation"
DOCK_NAME = f"{WIDGET} ({PLUGIN})"
"""The dock's title as napari names a plugin widget (the CLI is below the widget layer: it docks the
widget through napari's plugin manifest and never imports ``_widgets``)."""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("view", help="open napari with volumes and the segmentation widget")
    p.add_argument("files", nargs="*", help="NIfTI/NRRD/MHA files or DICOM folders (default: sample CT)")
    p.add_argument("--no-widget", action="store_true", help="do not dock the segmentation widget")
    p.set_defaults(run=run)


def run(args) -> int:
    check_folders(args.files)
    viewer = open_viewer(args.files, dock_widget=not args.no_widget)
    import napari

    napari.run()
    del viewer
    return 0


def check_folders(files: list[str]) -> None:
    """Refuse, before napari starts, a folder that holds no DICOM series (e.g. an empty one)."""
    from pathlib import Path

    from ..io import NoDicomSeriesError, list_dicom_series

    for name in files:
        folder = Path(name)
        if not folder.is_dir():
            continue
        if not any(folder.iterdir()):
            raise NoDicomSeriesError(f"{folder}: the folder is empty; give image files or a DICOM folder")
        if not list_dicom_series(folder):
            raise NoDicomSeriesError(f"{folder}: no DICOM series found in this folder")


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
