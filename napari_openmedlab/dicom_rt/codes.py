"""The curated code table: TG-263 names and SNOMED CT codes for the shipped presets' classes.

``structure_codes.json`` holds one record per class of the SegRap2023 and TotalSegmentator presets:
the AAPM TG-263 name (used as the RTSTRUCT ROI name, the preset's name kept as ROI description), and
the SNOMED CT code of the structure (DICOM SEG segmented property type, RTSTRUCT RT ROI
Identification Code) with laterality as a separate modifier (SNOMED ``Left`` 7771000 / ``Right``
24028007), as DICOM SEG codes laterality. Codes named by keyword are looked up in pydicom's copy of
DICOM's code tables, so no code is typed in by hand; a record with a ``note`` is a documented
fallback (see docs/radiotherapy.md).

A class not in the table (a user's own name) is coded as SNOMED ``Anatomical Structure`` (a
``Tissue`` type) and keeps its own name: the documented generic fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("structure_codes.json")
_TARGET_PREFIXES = ("GTV", "CTV", "PTV", "ITV")


@dataclass(frozen=True)
class Code:
    """A coded concept: value, scheme designator, meaning."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class StructureCode:
    """How one class is named and coded in DICOM.

    Attributes:
        name: the class name as given (preset or user).
        roi_name: the RTSTRUCT ROI name (TG-263 where known, else ``name``).
        property_type: SNOMED CT code of the structure.
        category: SNOMED CT category (Anatomical Structure, or Morphologically Abnormal Structure
            for targets and lesions).
        laterality: SNOMED ``Left``/``Right`` modifier, or None.
        interpreted_type: RT ROI Interpreted Type (``ORGAN``, ``GTV``, ``CTV``, ``PTV``, ...).
        fallback: why the code is a fallback (empty when it is the structure's own code).
    """

    name: str
    roi_name: str
    property_type: Code
    category: Code
    laterality: Code | None
    interpreted_type: str
    fallback: str = ""


def _sct(keyword: str) -> Code:
    from pydicom.sr.codedict import codes

    c = getattr(codes.SCT, keyword)
    return Code(c.value, c.scheme_designator, c.meaning)


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    doc = json.loads(TABLE.read_text(encoding="utf-8"))
    out = {}
    for rec in doc["classes"]:
        out.setdefault(rec["name"].lower(), rec)
        if rec.get("tg263"):
            out.setdefault(rec["tg263"].lower(), rec)
    return out


def table_records() -> list[dict]:
    """Every record of the curated table (for docs and tests)."""
    return json.loads(TABLE.read_text(encoding="utf-8"))["classes"]


def _interpreted_type(name: str) -> str:
    upper = name.upper()
    for prefix in _TARGET_PREFIXES:
        if upper.startswith(prefix):
            return prefix
    return "ORGAN"


def code_for(name: str) -> StructureCode:
    """The DICOM naming and coding of a structure called ``name`` (case-insensitive lookup)."""
    rec = _table().get(name.strip().lower())
    interpreted = _interpreted_type(name)
    abnormal = interpreted != "ORGAN" or (rec is not None and rec.get("sct_keyword") in ("Cyst", "GrossTumorVolume"))
    category = _sct("MorphologicallyAbnormalStructure") if abnormal else _sct("AnatomicalStructure")
    if rec is None:
        return StructureCode(
            name=name,
            roi_name=name,
            property_type=_sct("GrossTumorVolume") if interpreted == "GTV" else _sct("Tissue"),
            category=category,
            laterality=None,
            interpreted_type=interpreted,
            fallback="not in the curated table: generic code",
        )
    if "sct_keyword" in rec:
        prop = _sct(rec["sct_keyword"])
    else:
        prop = Code(rec["sct_value"], "SCT", rec["sct_meaning"])
    side = {"L": _sct("Left"), "R": _sct("Right")}.get(rec.get("laterality", ""))
    return StructureCode(
        name=name,
        roi_name=rec.get("tg263") or rec["name"],
        property_type=prop,
        category=category,
        laterality=side,
        interpreted_type=interpreted,
        fallback=rec.get("note", ""),
    )
