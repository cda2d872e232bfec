"""Checks that a volume file holds what its header promises, before SimpleITK reads it.

SimpleITK is lenient where a clinician needs it strict: it zero-fills NIfTI voxel data that end
early (also inside a perfectly valid gzip stream), reads a gzip stream that breaks off, and
replaces a NIfTI spacing of 0, -0, NaN or infinity by 1 mm without a word. Each of these would
give a mask or a score that looks right and is not, so they are refused here with one line.

The same checks run on files we write (``io.writers`` reads its output back through them), so a
full disk that SimpleITK's NIfTI writer does not report is caught before the rename.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

from .errors import CorruptFileError

_GZIP_CHUNK = 1 << 22


def check_gzip_stream(path: Path) -> tuple[bytes, int]:
    """Decompress ``path`` completely (checking the CRC); returns (first 540 bytes, total size)."""
    head = b""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_GZIP_CHUNK):
                if len(head) < 540:
                    head += chunk[: 540 - len(head)]
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise CorruptFileError(
            f"{path.name}: the compressed data end early; the file is truncated or damaged ({err})"
        ) from err
    return head, total


def _nifti_layout(head: bytes) -> dict | None:
    """Parse the fields we check from a NIfTI-1 or NIfTI-2 header; None when it is not NIfTI."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            return {
                "dims": dims,
                "bitpix": struct.unpack(order + "h", head[72:74])[0],
                "pixdim": struct.unpack(order + "8f", head[76:108]),
                "offset": struct.unpack(order + "f", head[108:112])[0],
                "sform_code": struct.unpack(order + "h", head[254:256])[0],
                "srow": struct.unpack(order + "12f", head[280:328]),
            }
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            return {
                "dims": struct.unpack(order + "8q", head[16:80]),
                "bitpix": struct.unpack(order + "h", head[14:16])[0],
                "pixdim": struct.unpack(order + "8d", head[104:168]),
                "offset": struct.unpack(order + "q", head[168:176])[0],
                "sform_code": struct.unpack(order + "i", head[348:352])[0],
                "srow": struct.unpack(order + "12d", head[400:496]),
            }
    return None


def _expected_nifti_bytes(layout: dict) -> int:
    dims = layout["dims"]
    n = 1
    for d in dims[1 : 1 + max(0, min(int(dims[0]), 7))]:
        n *= max(int(d), 0)
    return int(layout["offset"]) + n * int(layout["bitpix"]) // 8


def _check_nifti_spacing(name: str, layout: dict) -> None:
    """Refuse a spacing that is zero or not finite (ITK silently makes it 1 mm).

    With an sform (sform_code > 0) the spacing comes from its columns, so those are checked
    instead of pixdim.
    """
    ndim = max(0, min(int(layout["dims"][0]), 3))
    if layout["sform_code"] > 0:
        srow = layout["srow"]
        spacing = [math.sqrt(sum(srow[4 * r + c] ** 2 for r in range(3))) for c in range(ndim)]
        if all(math.isfinite(v) and v > 0 for v in spacing):
            return
    spacing = list(layout["pixdim"][1 : 1 + ndim])
    bad = [v for v in spacing if not math.isfinite(v) or v == 0]
    if bad:
        shown = ", ".join(repr(v) for v in spacing)
        raise CorruptFileError(
            f"{name}: the header gives a voxel spacing of ({shown}) mm; a spacing must be a finite "
            "non-zero number (fix the header; guessing 1 mm would put every millimetre wrong)"
        )


def check_volume_file(path: Path) -> None:
    """Refuse a truncated gzip stream, NIfTI data shorter than the header says, or a bad spacing."""
    name = path.name.lower()
    if name.endswith(".gz"):
        head, size = check_gzip_stream(path)
    elif name.endswith(".nii"):
        with open(path, "rb") as f:
            head = f.read(540)
        size = path.stat().st_size
    else:
        return
    if not name.endswith((".nii", ".nii.gz")):
        return
    layout = _nifti_layout(head)
    if layout is None:
        return  # not NIfTI inside: SimpleITK's decoder gives the message
    if size < _expected_nifti_bytes(layout):
        raise CorruptFileError(
            f"{path.name}: the voxel data end early ({size} of {_expected_nifti_bytes(layout)} bytes); "
            "the file is truncated"
        )
    _check_nifti_spacing(path.name, layout)
