"""Headless annotation logic behind the segmentation widget: edits, undo, label classes, autosave.

Nothing here imports napari or Qt, so a notebook or a batch job can replay what the widget does, and
the tests exercise it without a display.
"""

from .autosave import RecoveryError, image_key, recovery_root
from .editing import OVERLAP_RULES, commit_mask
from .importing import structures_from_autoseg
from .label_classes import LabelClass, list_presets, load_preset, read_classes, write_classes
from .masks import SparseMask, bbox_slices, bounding_box, mask_digest
from .requests import (
    COMMIT_MODES,
    AddBox,
    AddPoint,
    AddStructure,
    ClearObject,
    Commit,
    Contour,
    Edit,
    ImportStructures,
    Lock,
    Redo,
    Refine,
    RemoveStructure,
    Rename,
    Request,
    RequestError,
    SetVisible,
    Undo,
    request_from_dict,
)
from .session import AnnotationSession, EngineCall, Outcome, SessionError
from .structure_autosave import StructureSetAutosave
from .structure_set import Flattening, LockedStructureError, Structure, StructureSet, StructureSetError
from .undo import History, LabelDiff, ObjectState, Step

__all__ = [
    "COMMIT_MODES",
    "AddBox",
    "AddPoint",
    "AddStructure",
    "AnnotationSession",
    "ClearObject",
    "Commit",
    "Contour",
    "Edit",
    "EngineCall",
    "ImportStructures",
    "Lock",
    "Outcome",
    "Redo",
    "Refine",
    "RemoveStructure",
    "Rename",
    "Request",
    "RequestError",
    "SessionError",
    "SetVisible",
    "StructureSetAutosave",
    "Undo",
    "request_from_dict",
    "structures_from_autoseg",
    "Flattening",
    "LockedStructureError",
    "SparseMask",
    "Structure",
    "StructureSet",
    "StructureSetError",
    "bbox_slices",
    "bounding_box",
    "mask_digest",
    "OVERLAP_RULES",
    "History",
    "LabelClass",
    "LabelDiff",
    "ObjectState",
    "RecoveryError",
    "Step",
    "commit_mask",
    "image_key",
    "list_presets",
    "load_preset",
    "read_classes",
    "recovery_root",
    "write_classes",
]
