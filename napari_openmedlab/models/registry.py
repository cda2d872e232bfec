"""One record per model: what it is, where its weights come from, how its input is prepared."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """A model the project knows.

    Attributes:
        name: registry name used by the CLI and the widget.
        family: ``"3d"`` (native volumetric), ``"2d"`` (slice by slice) or ``"classic"`` (no weights).
        filename: checkpoint file name in the weights cache (empty for weight-free engines).
        url: official download address, or None when the file is only on a manual-download page.
        sha256: published SHA-256, or None (then the hash seen on first use is recorded).
        size_bytes: approximate download size, for the widget's download button.
        source: where a user finds the weights and the paper.
        input_size: network input edge in voxels/pixels.
        spacing_mm: isotropic resampling for 3D models, None for 2D ones.
        normalisation: how intensities are prepared, in words (the code lives with the engine).
    """

    name: str
    family: str
    filename: str = ""
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    source: str = ""
    input_size: int = 0
    spacing_mm: float | None = None
    normalisation: str = ""

    @property
    def needs_weights(self) -> bool:
        return bool(self.filename)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="sam-med3d-turbo",
            family="3d",
            filename="sam_med3d_turbo.pth",
            url="https://huggingface.co/blueyo0/SAM-Med3D/resolve/main/sam_med3d_turbo.pth",
            sha256="899a46d04d3b70f723282ceb489149373558bf0aaba389a346f5ab57da5cdd3c",
            size_bytes=452_000_000,
            source="https://github.com/uni-medical/SAM-Med3D",
            input_size=128,
            spacing_mm=1.5,
            normalisation="z-score over the crop's voxels > 0",
        ),
        ModelSpec(
            name="sam-med2d",
            family="2d",
            filename="sam-med2d_b.pth",
            url=None,
            sha256=None,
            size_bytes=2_400_000_000,
            source="https://github.com/OpenGVLab/SAM-Med2D (README: 'SAM-Med2D' checkpoint link)",
            input_size=256,
            normalisation="window to 0..255, resize to 256x256, SAM pixel mean/std",
        ),
        ModelSpec(
            name="medsam",
            family="2d",
            filename="medsam_vit_b.pth",
            url=None,
            sha256=None,
            size_bytes=375_000_000,
            source="https://github.com/bowang-lab/MedSAM (README: 'medsam_vit_b' checkpoint link)",
            input_size=1024,
            normalisation="window, min-max to 0..255, resize straight to 1024x1024 (bicubic), min-max to 0..1",
        ),
        ModelSpec(
            name="sam-vit-b",
            family="2d",
            filename="sam_vit_b_01ec64.pth",
            url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            sha256=None,
            size_bytes=375_042_383,
            source="https://github.com/facebookresearch/segment-anything",
            input_size=1024,
            normalisation="window to 0..255, long side to 1024, pad, SAM pixel mean/std",
        ),
        ModelSpec(
            name="seeded-region",
            family="classic",
            source="weight-free 3D seeded region growing from the clicks (intensity windows and radii in mm)",
            normalisation="robust intensity scaling from the clicked voxels",
        ),
    )
}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; say it plainly
        return str(self.args[0])


def get_spec(name: str) -> ModelSpec:
    """The record for ``name``; a clear error lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
