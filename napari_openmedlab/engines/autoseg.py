"""Automatic pre-segmentation with a trained nnU-Net v2 model folder, through nnU-Net's own pipeline.

:class:`AutoSegmenter` builds the network the folder's trainer names (:mod:`..models.nnunet`),
hands it to nnU-Net's ``nnUNetPredictor`` (``manual_initialization``) and then runs exactly the
steps of nnU-Net's ``predict_single_npy_array``: the plans' preprocessor (transpose, crop to
non-zero, resampling, normalisation), the Gaussian-weighted sliding window with mirroring over
every fold, and the export back to the input grid. Only the I/O is ours: the input comes as
:class:`~napari_openmedlab.io.Volume` channels (any format we read, DICOM included) and the label
map goes back on the first channel's grid.

Progress and cancellation: the network is wrapped so that every forward call reports progress
and, once cancel is set, every module checks it before running (and Swin-UMamba's CPU scans
between blocks of the sequence), so a run stops within one layer's time. A cancelled forward returns zeros
instead of raising inside nnU-Net's sliding-window loop (raising there would leave its tile
producer thread blocked, holding the image); the loop then drains in milliseconds and
:class:`~.base.Cancelled` is raised once nnU-Net has returned.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass

import numpy as np

from ..io.volume import Volume
from ..models.nnunet.errors import AutosegError, ChannelMismatchError, ModelFolderError, NnUNetMissingError
from ..models.nnunet.folder import ModelFolder
from .base import Cancelled

__all__ = ["AutoSegmenter", "AutosegResult", "require_nnunet"]

ProgressFn = Callable[[float, str], None]

# nnU-Net's readers that hand the network SimpleITK's array order (z, y, x) with the spacing
# reversed, as we do (NibabelIO transposes nibabel's (x, y, z) to it). NibabelIOWithReorient first
# permutes and flips the voxel axes to the closest RAS+ orientation (nibabel's canonical one): in
# SimpleITK that is DICOMOrient(image, "RAS"), and the result is oriented back the same way.
_SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")


def require_nnunet() -> None:
    """Raise :class:`NnUNetMissingError` (with the install command) unless nnunetv2 imports."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError as err:
        raise NnUNetMissingError(
            'automatic pre-segmentation needs nnU-Net v2: pip install "napari-openmedlab[nnunet]"'
        ) from err


@dataclass
class AutosegResult:
    """A predicted label map on the input's grid.

    Attributes:
        labels: uint8/uint16 label map (z, y, x), the input's geometry.
        classes: label id -> class name (``dataset.json``), background left out.
        probabilities: (classes incl. background, z, y, x) float32, when asked for.
        seconds: wall time of the prediction (preprocessing to export).

    As a structure set (one structure per class): ``annotation.structures_from_autoseg(result)``
    (the annotation layer sits above the engines, so the conversion lives there).
    """

    labels: Volume
    classes: dict[int, str]
    probabilities: np.ndarray | None = None
    seconds: float = 0.0


class _Stop(Exception):
    """Raised by a module pre-hook once cancel is set; caught by the :func:`_interruptible` wrapper."""


def _interruptible(network, num_outputs: int):
    """``network`` wrapped for nnU-Net: counts forward calls, and stops quickly once cancelled.

    The wrapper's class is made here so that importing this module does not import torch.
    """
    import torch

    class Interruptible(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.num_outputs = num_outputs
            self.cancel: threading.Event | None = None
            self.on_call: Callable[[], None] | None = None
            self.cancelled = False
            for module in network.modules():
                module.register_forward_pre_hook(self._check)

        def _check(self, module, args):
            if self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
                raise _Stop

        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            # nnU-Net loads each fold's weights here: between folds is a clean place to stop.
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("automatic segmentation cancelled")
            return self.network.load_state_dict(state_dict, strict=True, assign=assign)

        def _check_scan(self) -> None:
            self._check(None, None)

        def forward(self, x):
            from ..models.swin_umamba.selective_scan import interrupt_check

            if not self.cancelled:
                try:
                    with interrupt_check(self._check_scan):  # long Swin-UMamba scans stop too
                        out = self.network(x)
                except _Stop:
                    pass
                else:
                    if self.on_call is not None:
                        self.on_call()
                    return out
            return x.new_zeros((x.shape[0], self.num_outputs, *x.shape[2:]))

    return Interruptible()


class AutoSegmenter:
    """One model folder, ready to segment volumes (see the module doc).

    Args:
        folder: a read :class:`~napari_openmedlab.models.nnunet.ModelFolder`.
        device: ``auto``, ``cuda``, ``mps`` or ``cpu``.
        tile_step_size, use_mirroring: nnU-Net's predictor settings (its defaults: 0.5, True).

    Raises:
        NnUNetMissingError, UnknownTrainerError, ModelFolderError, CheckpointMismatchError.
    """

    def __init__(self, folder: ModelFolder, device: str = "auto", *, tile_step_size: float = 0.5,
                 use_mirroring: bool = True) -> None:
        require_nnunet()
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from ..models.device import resolve_device
        from ..models.errors import CheckpointMismatchError
        from ..models.nnunet.networks import build_network

        self.folder = folder
        try:
            self.device = resolve_device(device)
        except ValueError as err:  # an unknown or absent device: the user's input, one line
            raise AutosegError(str(err)) from err
        plans_manager = PlansManager(deepcopy(folder.plans))
        with _quiet():  # old (2.1) plans: nnU-Net warns that it converts them
            configuration = plans_manager.get_configuration(folder.configuration)
        if configuration.previous_stage_name is not None:
            raise ModelFolderError(f"{folder.path}: cascade configurations ('{folder.configuration}') need the "
                                   "previous stage's result; use a 3d_fullres or 2d folder")
        reader = plans_manager.plans.get("image_reader_writer", "SimpleITKIO")
        if reader not in _SUPPORTED_READERS:
            raise ModelFolderError(f"{folder.path}: models trained with {reader} images are not supported "
                                   f"(supported: {', '.join(_SUPPORTED_READERS)})")
        self._reorient = reader == "NibabelIOWithReorient"
        self.plans_manager, self.configuration = plans_manager, configuration
        self.label_manager = plans_manager.get_label_manager(folder.dataset)
        n_in = determine_num_input_channels(plans_manager, configuration, folder.dataset)
        n_out = self.label_manager.num_segmentation_heads
        network = build_network(folder.trainer_name, plans_manager, configuration, n_in, n_out)
        expected = network.state_dict()
        for fold, weights in zip(folder.folds, folder.weights):
            missing = [k for k in expected if k not in weights]
            unexpected = [k for k in weights if k not in expected]
            mismatched = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in weights.items()
                          if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
            if missing or unexpected or mismatched:
                raise CheckpointMismatchError(missing, unexpected, mismatched,
                                              what=f"fold_{fold} of {folder.path} ({folder.trainer_name})")
        network.load_state_dict(folder.weights[0], strict=True)
        self.network = _interruptible(network.eval(), n_out)
        with _quiet():  # the predictor prints a note about devices when it is not CUDA
            self.predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True,
                                             use_mirroring=use_mirroring,
                                             perform_everything_on_device=self.device.type == "cuda",
                                             device=self.device, verbose=False, allow_tqdm=False)
        self.predictor.manual_initialization(self.network, plans_manager, configuration, list(folder.weights),
                                             folder.dataset, folder.trainer_name, folder.mirroring_axes)

    @property
    def classes(self) -> dict[int, str]:
        return self.folder.class_names

    def predict(self, channels: Volume | Sequence[Volume], *, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None, probabilities: bool = False) -> AutosegResult:
        """Segment one case: ``channels`` in ``dataset.json`` order, all on the same grid.

        Raises:
            ChannelMismatchError: wrong number of channels, or channels on different grids.
            Cancelled: ``cancel`` was set (within one network layer's time).
        """
        import torch
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        start = time.perf_counter()
        channels = [channels] if isinstance(channels, Volume) else list(channels)
        image, spacing = self._stack(channels)
        oriented_geometry = None
        if self._reorient:
            oriented = [_orient(c, channels[0].geometry, "RAS") for c in image]
            image = np.stack([a for a, _ in oriented])
            oriented_geometry = oriented[0][1]
            spacing = [float(s) for s in oriented_geometry.spacing[::-1]]
        report = progress or (lambda fraction, message: None)
        stop = cancel or threading.Event()

        report(0.0, "preprocessing")
        preprocessor = self.configuration.preprocessor_class(verbose=False)
        data, _, properties = preprocessor.run_case_npy(image, None, {"spacing": spacing}, self.plans_manager,
                                                        self.configuration, self.folder.dataset)
        if stop.is_set():
            raise Cancelled("automatic segmentation cancelled")
        data = torch.from_numpy(data)
        total = self._count_forward_calls(tuple(data.shape[1:]))
        calls = itertools.count(1)

        def on_call() -> None:
            done = next(calls)
            report(0.05 + 0.9 * min(1.0, done / total), f"predicting ({done}/{total} network passes)")

        self.network.cancel, self.network.on_call, self.network.cancelled = stop, on_call, False
        try:
            logits = self.predictor.predict_logits_from_preprocessed_data(data).cpu()
        finally:
            self.network.cancel, self.network.on_call = None, None
        if stop.is_set() or self.network.cancelled:
            raise Cancelled("automatic segmentation cancelled")
        report(0.96, "resampling to the image grid")
        out = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans_manager, self.configuration, self.label_manager, properties,
            return_probabilities=probabilities)
        seg, probs = out if probabilities else (out, None)
        if self._reorient:
            seg = _orient(seg, oriented_geometry, channels[0].geometry)
            probs = None if probs is None else np.stack(
                [_orient(p, oriented_geometry, channels[0].geometry) for p in probs])
        labels = channels[0].with_array(np.ascontiguousarray(seg), kind="labels",
                                        autoseg=self.folder.describe())
        labels.metadata.pop("window", None)
        report(1.0, "done")
        return AutosegResult(labels, self.classes, None if probs is None else np.asarray(probs, np.float32),
                             time.perf_counter() - start)

    def _stack(self, channels: list[Volume]) -> tuple[np.ndarray, list[float]]:
        """(c, z, y, x) float32 and the (z, y, x) spacing, as nnU-Net's SimpleITKIO reads files."""
        names = self.folder.channel_names
        if len(channels) != len(names):
            raise ChannelMismatchError(
                f"the model expects {len(names)} channel(s) ({', '.join(names)}); {len(channels)} image(s) given")
        first = channels[0]
        for i, other in enumerate(channels[1:], start=1):
            if other.shape != first.shape or not np.allclose(
                    other.geometry.index_to_physical_matrix(), first.geometry.index_to_physical_matrix(),
                    atol=1e-4):
                raise ChannelMismatchError(f"channel {i} ({names[i]}) is not on the grid of channel 0; "
                                           "resample the images onto one grid first")
        image = np.stack([np.asarray(c.array, dtype=np.float32) for c in channels])
        spacing = [float(s) for s in first.geometry.spacing[::-1]]  # (x, y, z) -> (z, y, x)
        return np.ascontiguousarray(image), spacing

    def _count_forward_calls(self, shape: tuple[int, ...]) -> int:
        """Network passes nnU-Net will make for preprocessed data of ``shape`` (for progress)."""
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        patch = list(self.configuration.patch_size)
        padded = [max(s, p) for s, p in zip(shape[-len(patch):], patch)]
        tiles = int(np.prod([len(s) for s in compute_steps_for_sliding_window(
            padded, patch, self.predictor.tile_step_size)]))
        if len(patch) < len(shape):
            tiles *= shape[0]
        axes = self.folder.mirroring_axes if self.predictor.use_mirroring else None
        passes = 2 ** len(axes) if axes else 1
        return max(1, tiles * passes * len(self.folder.weights))


def _orient(array: np.ndarray, geometry, target):
    """Permute/flip a (z, y, x) array on ``geometry``'s grid (exact, no interpolation).

    ``target`` an orientation code ("RAS"): returns (array, its new Geometry). ``target`` a
    Geometry (the original grid): returns the array on that grid.
    """
    import SimpleITK as sitk

    from ..io.geometry import Geometry

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    geometry.apply_to_sitk(image)
    if isinstance(target, str):
        out = sitk.DICOMOrient(image, target)
        return sitk.GetArrayFromImage(out), Geometry.from_sitk(out)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(target.direction)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, code))


@contextlib.contextmanager
def _quiet():
    """Silence nnU-Net's prints and warnings meant for its own command line (set-up only: the
    redirection is process-wide, so it is never held during a long prediction)."""
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
