"""``openmedlab view [FILE...]``: napari with the files (or the sample CT) and the widget docked."""

from __future__ import annotations

DOCK_NAME = "OpenMEDLab segmentation"


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
        from .._widgets.segmentation_widget import SegmentationWidget

        viewer.window.add_dock_widget(SegmentationWidget(viewer), name=DOCK_NAME, area="right")
    return viewer
