"""``openmedlab batch``: pre-segment or evaluate every case of a data set, in one process or on Ray.

:mod:`.tasks` holds what is done to one case (picklable, so a Ray actor can hold one with its model
loaded); :mod:`.run` finds the cases, skips finished ones, and drives them locally or on a Ray
cluster, writing each case's result atomically as it arrives.
"""

from .run import BatchReport, find_batch_cases, run_batch
from .tasks import AutosegTask, EvalTask

__all__ = ["AutosegTask", "BatchReport", "EvalTask", "find_batch_cases", "run_batch"]
