"""Annotating a whole data set: the case list, statuses, resume, effort, and training exports.

Headless: :class:`AnnotationProject` owns the project state file and the per-case structure sets;
the case list dock (``_widgets/case_list.py``) is a view of it, and ``openmedlab dataset`` exports
and reports from it.
"""

from .cases import DatasetCase, find_dataset_cases
from .project import STATUSES, AnnotationProject, CaseWork, ProjectError, ProjectLockedError

__all__ = [
    "STATUSES",
    "AnnotationProject",
    "CaseWork",
    "DatasetCase",
    "ProjectError",
    "ProjectLockedError",
    "find_dataset_cases",
]
