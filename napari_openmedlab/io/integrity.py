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
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import CorruptFileError

_GZIP_CHUNK = 1 << 22


def check_gzip_stream(path: Path) -> tuple[bytes, int]:
    """Decompress ``path`` completely (checking the CRC); returns (first 540 bytes, total size)."""
    scan = _scan(path, gzip.open)
    return scan.head, scan.total


class _Scan:
    """One pass over a (decompressed) file: its head, its size, and a float NIfTI's non-finite voxels."""

    def __init__(self) -> None:
        self.head = b""
        self.total = 0
        self.layout: dict | None = None
        self.dtype: np.dtype | None = None
        self.nonfinite: list[np.ndarray] = []  # flat voxel indices, C order of the (z, y, x) array
        self._carry = b""
        self._voxel = 0
        self.data_crc = 0  # CRC-32 of the bytes after the header's vox_offset (the voxel data)

    def feed(self, chunk: bytes) -> None:
        start = self.total
        self.total += len(chunk)
        if len(self.head) < 540:
            self.head += chunk[: 540 - len(self.head)]
            if len(self.head) >= 348 and self.layout is None:
                self._start()
        if self.layout is None or self.total <= self.layout["offset"]:
            return
        fresh = chunk[max(0, int(self.layout["offset"]) - start):]
        self.data_crc = zlib.crc32(fresh, self.data_crc)
        if self.dtype is None:
            return
        data = self._carry + fresh
        usable = len(data) - len(data) % self.dtype.itemsize
        values = np.frombuffer(data[:usable], self.dtype)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            self.nonfinite.append(bad + self._voxel)
        self._voxel += values.size
        self._carry = data[usable:]

    def _start(self) -> None:
        # the first chunk holds the whole header (chunks are MiB); a shorter file is padded here
        # only to be parsed: its size check fails later anyway
        self.layout = _nifti_layout(self.head.ljust(540, b"\0"))
        if self.layout and int(self.layout["dims"][0]) == 3 and self.layout["datatype"] in (16, 64):
            kind = "f4" if self.layout["datatype"] == 16 else "f8"
            self.dtype = np.dtype(self.layout["order"] + kind)


def _scan(path: Path, opener) -> _Scan:
    scan = _Scan()
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(_GZIP_CHUNK):
                scan.feed(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise CorruptFileError(
            f"{path.name}: the compressed data end early; the file is truncated or damaged ({err})"
        ) from err
    return scan


def _nifti_layout(head: bytes) -> dict | None:
    """Parse the fields we check from a NIfTI-1 or NIfTI-2 header; None when it is not NIfTI."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            return {
                "order": order,
                "datatype": struct.unpack(order + "h", head[70:72])[0],
                "dims": dims,
                "bitpix": struct.unpack(order + "h", head[72:74])[0],
                "pixdim": struct.unpack(order + "8f", head[76:108]),
                "offset": struct.unpack(order + "f", head[108:112])[0],
                "sform_code": struct.unpack(order + "h", head[254:256])[0],
                "srow": struct.unpack(order + "12f", head[280:328]),
            }
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            return {
                "order": order,
                "datatype": struct.unpack(order + "h", head[12:14])[0],
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
        shown = ", ".join(f"{v:g}" for v in spacing)
        raise CorruptFileError(
            f"{name}: the header gives a voxel spacing of ({shown}) mm; a spacing must be a finite "
            "non-zero number (fix the header; guessing 1 mm would put every millimetre wrong)"
        )


def nifti_matches(path: Path, array: np.ndarray) -> bool:
    """Whether the NIfTI ``path`` we just wrote holds exactly ``array`` ((z, y, x), as SimpleITK writes it).

    For ``.nii``: one pass over the file (size, dimensions, CRC-32 of the voxel bytes). For
    ``.nii.gz`` only the header is decompressed: the gzip trailer (CRC-32 and length of the whole
    uncompressed stream) must equal those computed from the header and the array's bytes; a
    stream cut short by a full disk ends in deflate data, not in that trailer. Much cheaper than
    decoding the file again, and as strict for a cut or short write.
    """
    data = np.ascontiguousarray(array)
    if data.dtype.itemsize > 1 and data.dtype.byteorder == ">":
        return False  # not what SimpleITK writes here: let the caller decode the file instead
    gz = path.name.lower().endswith(".gz")
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
            layout = _nifti_layout(head.ljust(540, b"\0"))
            if layout is None or layout["order"] != "<":
                return False
            offset = int(layout["offset"])
            prefix = (head + f.read(max(0, offset - len(head))))[:offset]
    except (EOFError, OSError, zlib.error):
        return False
    dims = [int(d) for d in layout["dims"][1 : 1 + int(layout["dims"][0])]]
    while len(dims) > array.ndim and dims[-1] == 1:
        dims.pop()
    if dims != list(array.shape[::-1]) or _expected_nifti_bytes(layout) != offset + data.nbytes:
        return False
    if len(prefix) != offset:
        return False
    if not gz:
        scan = _scan(path, open)
        return scan.total == offset + data.nbytes and scan.data_crc == zlib.crc32(memoryview(data).cast("B"))
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        crc, size = struct.unpack("<II", f.read(8))
    want = zlib.crc32(memoryview(data).cast("B"), zlib.crc32(prefix))
    return crc == want and size == (offset + data.nbytes) % (1 << 32)


def check_volume_file(path: Path) -> np.ndarray | None:
    """Refuse a truncated gzip stream, NIfTI data shorter than the header says, or a bad spacing.

    Returns the flat (C order of the ``(z, y, x)`` array) indices of NaN/infinite voxels of a 3D
    float NIfTI, which ITK's reader silently turns into 0 (a real value: water in CT), so that
    the reader can put them back; None when there are none or the file is not NIfTI.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz", ".gz")):
        return None
    scan = _scan(path, gzip.open if name.endswith(".gz") else open)
    if not name.endswith((".nii", ".nii.gz")):
        return None
    layout = _nifti_layout(scan.head)
    if layout is None:
        return None  # not NIfTI inside: SimpleITK's decoder gives the message
    expected = _expected_nifti_bytes(layout)
    if scan.total < expected:
        raise CorruptFileError(
            f"{path.name}: the voxel data end early ({scan.total} of {expected} bytes); the file is truncated"
        )
    _check_nifti_spacing(path.name, layout)
    return np.concatenate(scan.nonfinite) if scan.nonfinite else None
