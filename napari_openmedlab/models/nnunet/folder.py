"""An nnU-Net v2 results folder: ``plans.json``, ``dataset.json``, ``fold_*/checkpoint_*.pth``.

This is what ``nnUNetv2_train`` leaves in ``nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>``
and how trained models are shared (TotalSegmentator's, the Swin-UMamba releases). Reading the
folder checks everything before any network is built, so a wrong folder fails in one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelFolderError

__all__ = ["ModelFolder", "read_model_folder"]

DEFAULT_CHECKPOINT = "checkpoint_final.pth"


@dataclass
class ModelFolder:
    """A checked results folder and its checkpoints' content (weights on the CPU).

    Attributes:
        path: the folder.
        plans, dataset: ``plans.json`` and ``dataset.json`` as dicts.
        folds: the folds used (``"0"``, ``"1"``, ..., or ``"all"``).
        trainer_name, configuration: from the first checkpoint (e.g. ``nnUNetTrainer``, ``3d_fullres``).
        mirroring_axes: ``inference_allowed_mirroring_axes`` of the checkpoint (None: no mirroring).
        weights: one state dict per fold.
    """

    path: Path
    plans: dict
    dataset: dict
    folds: tuple[str, ...]
    trainer_name: str
    configuration: str
    mirroring_axes: tuple[int, ...] | None
    weights: list[dict] = field(repr=False, default_factory=list)

    @property
    def channel_names(self) -> list[str]:
        """The input channels in order (``dataset.json`` ``channel_names``, or the older ``modality``)."""
        channels = self.dataset.get("channel_names", self.dataset.get("modality", {}))
        return [str(channels[k]) for k in sorted(channels, key=lambda k: int(k))]

    @property
    def class_names(self) -> dict[int, str]:
        """Label id in the written label map -> class name (background and ignore left out)."""
        labels: dict[str, Any] = self.dataset.get("labels", {})
        named = [(name, value) for name, value in labels.items() if name not in ("background", "ignore")]
        if any(isinstance(v, (list, tuple)) for _, v in named):  # region-based training
            order = self.dataset.get("regions_class_order") or list(range(1, len(named) + 1))
            return {int(order[i]): name for i, (name, _) in enumerate(named)}
        return {int(value): name for name, value in named}

    @property
    def is_2d(self) -> bool:
        return len(self.plans["configurations"][self.configuration].get("patch_size", ())) == 2

    def describe(self) -> str:
        kind = "2D" if self.is_2d else "3D"
        return (f"{self.trainer_name} {self.configuration} ({kind}), folds {', '.join(self.folds)}, "
                f"{len(self.channel_names)} channel(s), {len(self.class_names)} class(es)")


def read_model_folder(path: str | os.PathLike, folds: list[str] | tuple[str, ...] | None = None,
                      checkpoint: str = DEFAULT_CHECKPOINT) -> ModelFolder:
    """Check and read a results folder; the checkpoints are read weights-only (no code runs).

    Args:
        folds: the folds to use (``["0", "1"]``, ``["all"]``); default: every ``fold_*`` folder
            holding ``checkpoint``.
        checkpoint: the file name inside each fold folder (``checkpoint_final.pth``,
            ``checkpoint_best.pth``).

    Raises:
        ModelFolderError: missing or unreadable plans/dataset/checkpoints, folds that disagree.
        CheckpointError, UnsafeCheckpointError: a checkpoint that cannot be read safely.
    """
    from .checkpoint import read_nnunet_checkpoint

    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelFolderError(f"{root}: no such model folder")
    missing = [name for name in ("plans.json", "dataset.json") if not (root / name).is_file()]
    if missing:
        inner = sorted(p.parent.name for p in root.glob("*/plans.json"))
        hint = f"; it holds model folders, choose one: {', '.join(inner)}" if inner else ""
        raise ModelFolderError(f"{root}: not an nnU-Net results folder (no {' or '.join(missing)}){hint}")
    plans = _read_json(root / "plans.json")
    dataset = _read_json(root / "dataset.json")
    if not isinstance(plans.get("configurations"), dict):
        raise ModelFolderError(f"{root / 'plans.json'}: no 'configurations' (is it an nnU-Net v2 plans file?)")
    if not dataset.get("labels") or not (dataset.get("channel_names") or dataset.get("modality")):
        raise ModelFolderError(f"{root / 'dataset.json'}: needs 'labels' and 'channel_names'")
    fold_names = _choose_folds(root, folds, checkpoint)
    weights, first = [], None
    for fold in fold_names:
        content = read_nnunet_checkpoint(root / f"fold_{fold}" / checkpoint)
        if first is None:
            first = content
        elif (content["trainer_name"], content["init_args"]["configuration"]) != (
                first["trainer_name"], first["init_args"]["configuration"]):
            raise ModelFolderError(f"{root}: fold_{fold} was trained with another trainer or configuration "
                                   f"than fold_{fold_names[0]}")
        weights.append(content["network_weights"])
    configuration = first["init_args"]["configuration"]
    if configuration not in plans["configurations"]:
        raise ModelFolderError(f"{root}: the checkpoints' configuration '{configuration}' is not in plans.json "
                               f"({', '.join(plans['configurations'])})")
    axes = first.get("inference_allowed_mirroring_axes")
    return ModelFolder(root, plans, dataset, tuple(fold_names), first["trainer_name"], configuration,
                       tuple(int(a) for a in axes) if axes is not None else None, weights)


def _choose_folds(root: Path, folds, checkpoint: str) -> list[str]:
    if folds:
        chosen = [str(f).strip() for f in folds]
        absent = [f for f in chosen if not (root / f"fold_{f}" / checkpoint).is_file()]
        if absent:
            raise ModelFolderError(f"{root}: no {checkpoint} for fold(s) {', '.join(absent)}"
                                   f"{_found_hint(root)}")
        return chosen
    found = sorted((p.parent.name[len("fold_"):] for p in root.glob(f"fold_*/{checkpoint}")),
                   key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
    if not found:
        raise ModelFolderError(f"{root}: no fold_*/{checkpoint}{_found_hint(root)}")
    return found


def _found_hint(root: Path) -> str:
    present = sorted(str(p.relative_to(root)) for p in root.glob("fold_*/*.pth"))
    if not present:
        return ""
    return f" (found {', '.join(present[:4])}; choose one with --checkpoint NAME)"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: unreadable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    return data
