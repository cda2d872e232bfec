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
