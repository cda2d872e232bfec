"""``openmedlab annotate DATASET_DIR [--classes CLASSES.json] [--model M]``: a data set, case after case.

napari with the segmentation widget and the case list dock (issue #19): statuses, structures, time
spent, Previous / Next / Next undone; switching cases saves the open one first. The project state
is ``DATASET_DIR/openmedlab_project.json`` (see ``napari_openmedlab.dataset``); exports and the
effort report are ``openmedlab dataset export|report``. The CLI sits below the widgets: it docks
both through napari's plugin manifest and never imports ``_widgets``.
"""

from __future__ import annotations

from .view import PLUGIN, WIDGET

CASE_LIST = "Case list"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("annotate", help="annotate a data set folder case after case (napari + case list)")
    p.add_argument("dataset_dir", help="folder of images (NIfTI/NRRD/MHA, DICOM sub-folders) or an nnU-Net raw data set")
    p.add_argument("--classes", help="class table (JSON: id, name, colour) for new structures and the export")
    p.add_argument("--model", help="registry name of the model to load (see `openmedlab info`)")
    p.add_argument("--checkpoint", help="local checkpoint file for --model")
    p.add_argument("--device", default=None, help="auto, cuda, mps or cpu")
    p.set_defaults(run=run)


def check_dataset(args):
    """Everything that can be refused before napari starts: the folder, its cases, the class table."""
    from ..annotation.label_classes import read_classes
    from ..dataset.cases import find_dataset_cases

    find_dataset_cases(args.dataset_dir)
    return read_classes(args.classes) if args.classes else None


def open_annotation(args, viewer=None, show: bool = True):
    """Viewer with both docks and the data set open; returns ``(viewer, segmentation, case_list)``."""
    classes = check_dataset(args)
    if viewer is None:
        import napari

        viewer = napari.Viewer(show=show, title="napari-openmedlab — data set")
    _, segmentation = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET, tabify=False)
    _, case_list = viewer.window.add_plugin_dock_widget(PLUGIN, CASE_LIST, tabify=False)
    if args.model:
        segmentation.set_model(args.model, args.checkpoint, args.device)
    case_list.attach(segmentation)
    project = case_list.open_project(args.dataset_dir, classes)
    if project.classes:  # new structures are named by the project's classes
        segmentation.session.class_table = list(project.classes)
    return viewer, segmentation, case_list


def run(args) -> int:
    viewer, _, case_list = open_annotation(args)
    import napari

    try:
        napari.run()
    finally:
        case_list.close_project()  # saves the open case and frees the lock
    del viewer
    return 0
