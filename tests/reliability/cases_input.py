"""Cases of groups 3 (volumes and prompts that cannot be right), 4 (one line, never a traceback)
and 5 (inputs refused clearly before this work, kept so that they keep holding).

See ``faults.py`` for how a case runs and is classified.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from faults import (
    CASES,
    CENTRE,
    case,
    ct_array,
    eval_cli,
    run_api,
    run_cli,
    segment_cli,
    sphere_labels,
    write_ct,
    write_image,
)


# --- 3. volumes and prompts that cannot be right -------------------------------------------------
def _nifti_with(tmp: Path, change) -> Path:
    path = write_image(tmp / "raw.nii", ct_array())
    data = bytearray(path.read_bytes())
    change(data)
    out = tmp / "ct.nii.gz"
    out.write_bytes(gzip.compress(bytes(data)))
    return out


@case("3 impossible input", "NIfTI voxel data shorter than its header inside a valid gzip")
def short_nifti_valid_gzip(tmp):
    path = write_image(tmp / "raw.nii", ct_array())
    data = path.read_bytes()
    (tmp / "ct.nii.gz").write_bytes(gzip.compress(data[: len(data) // 2]))
    return segment_cli(tmp, tmp / "ct.nii.gz")


@case("3 impossible input", "gzip stream cut short (a truncated download)")
def truncated_gzip(tmp):
    data = write_ct(tmp).read_bytes()
    (tmp / "ct.nii.gz").write_bytes(data[: len(data) // 2])
    return segment_cli(tmp, tmp / "ct.nii.gz")


def _spacing_case(value: float):
    def run(tmp):
        def change(data):
            data[80:84] = struct.pack("<f", value)
            data[254:256] = struct.pack("<h", 0)  # no sform: the spacing is pixdim's

        return segment_cli(tmp, _nifti_with(tmp, change))

    return run


for _name, _value in (("zero", 0.0), ("negative_zero", -0.0), ("nan", float("nan")), ("inf", float("inf"))):
    case("3 impossible input", f"NIfTI spacing {_value!r} (read as 1 mm by SimpleITK)")(_spacing_case(_value))
    CASES[-1].id = f"spacing_{_name}"


@case("3 impossible input", "an image with no finite voxel (all NaN)")
def no_finite_voxel(tmp):
    return segment_cli(tmp, write_image(tmp / "ct.nii.gz", np.full((8, 16, 16), np.nan, np.float32)))


@case("3 impossible input", "a click on a NaN voxel")
def click_on_nan(tmp):
    array = ct_array().astype(np.float32)
    array[CENTRE] = np.nan
    return segment_cli(tmp, write_image(tmp / "ct.nii.gz", array))


@case("3 impossible input", "a box wholly outside its slice")
def box_outside_slice(tmp):
    from napari_openmedlab.engines import Box, PromptError, Prompts

    return run_api(lambda: Prompts(boxes=[Box(0, 3, 100, 100, 120, 130)]).check_inside((8, 40, 40)),
                   (PromptError,))


@case("3 impossible input", "eval with a CT given as the label map")
def eval_ct_as_labels(tmp):
    image = write_ct(tmp)
    return eval_cli(tmp, image, write_image(tmp / "seg.nii.gz", ct_array(1) - 500))


@case("3 impossible input", "eval with a label map of non-integer floats")
def eval_float_labels(tmp):
    image = write_ct(tmp)
    return eval_cli(tmp, image, write_image(tmp / "seg.nii.gz", sphere_labels() * np.float32(0.5)))


@case("3 impossible input", "--component on a 3D image")
def component_on_3d(tmp):
    return segment_cli(tmp, write_ct(tmp), "--component", "1")


@case("3 impossible input", "eval on a 4D image: the message names no option eval lacks")
def eval_4d_message(tmp):
    import SimpleITK as sitk

    path = tmp / "dyn.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 8, 8), np.int16), isVector=False), str(path))
    out = eval_cli(tmp, path, write_image(tmp / "seg.nii.gz", sphere_labels()))
    if "eval --component" in out.message:
        out.wrong = "names an option eval does not have"
    return out


# --- 4. one line, never a traceback --------------------------------------------------------------
@case("4 one line", "--device banana")
def device_banana(tmp):
    return segment_cli(tmp, write_ct(tmp), "--device", "banana")


@case("4 one line", "--device cuda on a machine without a GPU (cuda:99 where there is one)")
def device_cuda_missing(tmp):
    import torch

    return segment_cli(tmp, write_ct(tmp), "--device", "cuda:99" if torch.cuda.is_available() else "cuda")


@case("4 one line", "eval --device banana")
def eval_device_banana(tmp):
    return eval_cli(tmp, write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels()), "--device", "banana")


@case("4 one line", "view on an empty folder")
def view_empty_folder(tmp):
    (tmp / "empty").mkdir()
    return run_cli(["view", tmp / "empty"])


@case("4 one line", "view on a folder without DICOM files")
def view_folder_without_dicom(tmp):
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("hello")
    return run_cli(["view", tmp / "notes"])


@case("4 one line", "--checkpoint that is a folder")
def checkpoint_is_folder(tmp):
    return run_cli(["segment", write_ct(tmp), "--model", "sam-med3d-turbo", "--checkpoint", tmp,
                    "--point", "1,1,1", "--out", tmp / "m.nii.gz"])


@case("4 one line", "--out that is a folder")
def out_is_folder(tmp):
    (tmp / "out.nii.gz").mkdir()
    return segment_cli(tmp, write_ct(tmp), out=tmp / "out.nii.gz")


@case("4 one line", "eval --plot with a suffix matplotlib cannot write")
def eval_plot_bad_suffix(tmp):
    return eval_cli(tmp, write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels()),
                    "--plot", tmp / "dice.txt")


# --- 5. refused clearly already: kept so they keep holding ----------------------------------------
def _holds(what: str, build):
    def run(tmp):
        return build(tmp)

    case("5 holds", what)(run)
    return run


_holds("missing image file", lambda tmp: segment_cli(tmp, tmp / "nothing.nii.gz"))
_holds("unsupported suffix (.png)",
       lambda tmp: segment_cli(tmp, (tmp / "a.png").write_bytes(b"\x89PNG") and tmp / "a.png"))
_holds("a text file named .nii",
       lambda tmp: segment_cli(tmp, (tmp / "a.nii").write_text("not an image\n" * 30) and tmp / "a.nii"))
_holds("a 2D image", lambda tmp: segment_cli(tmp, write_image(tmp / "s.nii.gz", np.zeros((16, 16), np.int16))))
_holds("a click outside the volume",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "seeded-region", "--point", "10,500,20",
                            "--out", tmp / "m.nii.gz"]))
_holds("a point that is not z,y,x",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "seeded-region", "--point", "1,2",
                            "--out", tmp / "m.nii.gz"]))
_holds("a NaN point",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "seeded-region", "--point", "nan,1,1",
                            "--out", tmp / "m.nii.gz"]))
_holds("no --point and no --box",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "seeded-region", "--out", tmp / "m.nii.gz"]))
_holds("an unknown model",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "banana-net", "--point", "1,1,1",
                            "--out", tmp / "m.nii.gz"]))
_holds("a --checkpoint that does not exist",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "sam-med3d-turbo", "--checkpoint",
                            tmp / "none.pth", "--point", "1,1,1", "--out", tmp / "m.nii.gz"]))
_holds("a damaged checkpoint file",
       lambda tmp: run_cli(["segment", write_ct(tmp), "--model", "sam-med3d-turbo", "--checkpoint",
                            (tmp / "w.pth").write_bytes(b"PK\x03\x04garbage") and tmp / "w.pth",
                            "--point", "1,1,1", "--out", tmp / "m.nii.gz"]))
_holds("--out with an unknown suffix", lambda tmp: segment_cli(tmp, write_ct(tmp), out=tmp / "m.txt"))
_holds("--out in a folder that does not exist",
       lambda tmp: segment_cli(tmp, write_ct(tmp), out=tmp / "no" / "m.nii.gz"))
_holds("eval with an empty label map",
       lambda tmp: eval_cli(tmp, write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels() * 0)))
_holds("eval --clicks 0",
       lambda tmp: eval_cli(tmp, write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels()), "--clicks", "0"))
_holds("eval on a single image without LABELS",
       lambda tmp: run_cli(["eval", write_ct(tmp), "--model", "seeded-region", "--out", tmp / "r.csv"]))
for _i, _c in enumerate(CASES[-16:]):
    _c.id = "holds_" + _c.what.split(" (")[0].replace(" ", "_").replace("-", "").replace("/", "")[:40]


@case("5 holds", "segment on a good image writes a mask in the image's geometry", expect="ok")
def segment_good(tmp):
    from napari_openmedlab.io import read_volume

    out = segment_cli(tmp, write_ct(tmp))
    if out.rc == 0:
        mask = read_volume(tmp / "mask.nii.gz")
        if mask.array[CENTRE] != 1 or not mask.geometry.same_grid(read_volume(tmp / "ct.nii.gz").geometry):
            out.wrong = "the mask misses the click or the image grid"
    return out


@case("5 holds", "eval on a good image and label map writes the CSV and the plot", expect="ok")
def eval_good(tmp):
    out = eval_cli(tmp, write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels()), "--plot", tmp / "d.png")
    if out.rc == 0 and not ((tmp / "r.csv").is_file() and (tmp / "d.png").is_file()):
        out.wrong = "the CSV or the plot is missing"
    return out
