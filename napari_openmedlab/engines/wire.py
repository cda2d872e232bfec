"""The wire format shared by ``openmedlab serve`` and :class:`~.remote.RemoteEngine`.

Headless and dependency-free (numpy, zlib, base64, json), so the client needs no web framework.

* A volume travels once, as the raw C-order bytes of its array compressed with zlib; its shape,
  dtype and geometry travel in JSON beside it. The receiver checks the declared size against its
  limits *before* inflating, and inflates with a bound, so a small upload cannot expand into a
  huge allocation.
* Prompts travel as JSON (:func:`prompts_to_json` / :func:`prompts_from_json`), validated on
  arrival.
* A prediction travels as its bounding box plus the bit-packed, zlib-compressed patch of the region
  that changed since the previous answer (:func:`encode_update` / :func:`apply_update`): the client
  keeps the previous mask and patches it, so a click that moves one boundary sends a few bytes.
"""

from __future__ import annotations

import base64
import json
import math
import zlib

import numpy as np

from .base import Box, Prediction, PromptError, Prompts

EMPTY = (0, 0, 0, 0, 0, 0)
VOLUME_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


class WireError(ValueError):
    """A message that does not follow the protocol (the text says what is wrong)."""


# --- volumes ---------------------------------------------------------------------------------
def encode_volume(array: np.ndarray, level: int = 1) -> tuple[dict, bytes]:
    """(header, body) for uploading ``array``: header JSON-able, body zlib-compressed bytes."""
    array = np.ascontiguousarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.name not in VOLUME_DTYPES:
        array = array.astype(np.float32)
    header = {"shape": [int(s) for s in array.shape], "dtype": array.dtype.name}
    return header, zlib.compress(array.tobytes(), level)


def decode_volume(header: dict, body: bytes, max_voxels: int) -> np.ndarray:
    """The array an upload carries; refuses before inflating anything larger than ``max_voxels``."""
    try:
        shape = tuple(int(s) for s in header["shape"])
        dtype = np.dtype(str(header["dtype"]))
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"volume header needs 'shape' (3 integers) and 'dtype': {err}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise WireError(f"a volume is 3D with positive sizes; got shape {list(shape)}")
    if dtype.name not in VOLUME_DTYPES:
        raise WireError(f"volume dtype {dtype.name!r} not accepted ({', '.join(VOLUME_DTYPES)})")
    voxels = math.prod(shape)
    if voxels > max_voxels:
        raise WireError(f"volume of {voxels} voxels exceeds this server's limit of {max_voxels}")
    expected = voxels * dtype.itemsize
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, expected + 1)
    except zlib.error as err:
        raise WireError(f"volume data is not valid zlib data ({err})") from None
    if len(raw) != expected or not inflater.eof or inflater.unconsumed_tail:
        raise WireError(
            f"volume data holds {len(raw)}{'+' if inflater.unconsumed_tail else ''} bytes, "
            f"the header promises {expected} (truncated or padded upload)"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


# --- masks -----------------------------------------------------------------------------------
def _pack(patch: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.packbits(np.asarray(patch, bool).ravel()).tobytes(), 6)).decode()


def _unpack(text: str, shape: tuple[int, ...], max_bytes: int = 1 << 31) -> np.ndarray:
    n = math.prod(shape)
    try:
        packed = zlib.decompressobj().decompress(base64.b64decode(text, validate=True), min(max_bytes, (n + 7) // 8 + 1))
    except (ValueError, zlib.error) as err:
        raise WireError(f"mask patch is not valid base64/zlib data ({err})") from None
    if len(packed) != (n + 7) // 8:
        raise WireError(f"mask patch holds {len(packed)} bytes, its box needs {(n + 7) // 8}")
    return np.unpackbits(np.frombuffer(packed, np.uint8), count=n).view(bool).reshape(shape)


def _box_shape(bbox) -> tuple[int, int, int]:
    return tuple(max(0, int(bbox[i + 3]) - int(bbox[i])) for i in range(3))  # type: ignore[return-value]


def _check_bbox(bbox, shape) -> tuple[int, ...]:
    try:
        bbox = tuple(int(v) for v in bbox)
    except (TypeError, ValueError, OverflowError):
        raise WireError(f"a box is six integers z0,y0,x0,z1,y1,x1; got {bbox!r}") from None
    if len(bbox) != 6:
        raise WireError(f"a box is six integers z0,y0,x0,z1,y1,x1; got {list(bbox)}")
    if bbox != EMPTY:
        for i in range(3):
            if not 0 <= bbox[i] <= bbox[i + 3] <= shape[i]:
                raise WireError(f"box {list(bbox)} does not fit the volume of shape {list(shape)}")
    return bbox


def encode_mask(bbox, patch) -> dict:
    return {"bbox": [int(v) for v in bbox], "patch": _pack(patch) if tuple(bbox) != EMPTY else ""}


def decode_mask(message: dict, shape) -> np.ndarray:
    """A dense boolean mask of ``shape`` from :func:`encode_mask`'s message."""
    bbox = _check_bbox(message.get("bbox", EMPTY), shape)
    out = np.zeros(shape, bool)
    if bbox != EMPTY:
        sl = tuple(slice(bbox[i], bbox[i + 3]) for i in range(3))
        patch = message.get("patch", "")
        if not isinstance(patch, str):
            raise WireError("a mask's 'patch' is a base64 string")
        out[sl] = _unpack(patch, _box_shape(bbox))
    return out


def encode_update(previous: Prediction | None, new: Prediction) -> dict:
    """The new prediction as its box plus the changed region's content (see the module docstring)."""
    msg = {"bbox": [int(v) for v in new.bbox], "shape": [int(s) for s in new.shape],
           "timings": {k: float(v) for k, v in new.timings.items()}}
    if previous is None or previous.shape != new.shape:
        msg["changed"] = list(msg["bbox"])
        msg["patch"] = _pack(new.patch) if tuple(new.bbox) != EMPTY else ""
        return msg
    # Outside the new box the new mask is empty, and the client crops its previous mask to that
    # box, so only differences inside the new box need sending.
    box = tuple(new.bbox)
    if box == EMPTY:
        msg["changed"], msg["patch"] = list(EMPTY), ""
        return msg
    old_u, new_u = _crop(previous, box), new.patch
    diff = old_u ^ new_u
    if not diff.any():
        msg["changed"], msg["patch"] = list(EMPTY), ""
        return msg
    inner = _bounding_box(diff)
    changed = tuple(box[i] + inner[i] for i in range(3)) + tuple(box[i] + inner[i + 3] for i in range(3))
    sl = tuple(slice(inner[i], inner[i + 3]) for i in range(3))
    msg["changed"] = [int(v) for v in changed]
    msg["patch"] = _pack(new_u[sl])
    return msg


def apply_update(previous: Prediction | None, message: dict) -> Prediction:
    """Rebuild the new prediction from the previous one and :func:`encode_update`'s message."""
    try:
        shape = tuple(int(s) for s in message["shape"])
    except (KeyError, TypeError, ValueError):
        raise WireError("a prediction message needs 'shape'") from None
    bbox = _check_bbox(message.get("bbox", EMPTY), shape)
    changed = _check_bbox(message.get("changed", EMPTY), shape)
    timings = {str(k): float(v) for k, v in dict(message.get("timings", {})).items()}
    if bbox == EMPTY:
        return Prediction(EMPTY, np.zeros((0, 0, 0), bool), shape, timings=timings)
    if previous is not None and previous.shape == shape:
        patch = _crop(previous, bbox)
    else:
        patch = np.zeros(_box_shape(bbox), bool)
    if changed != EMPTY:
        lo = [changed[i] - bbox[i] for i in range(3)]
        if min(lo) < 0 or any(changed[i + 3] > bbox[i + 3] for i in range(3)):
            raise WireError(f"changed region {list(changed)} lies outside the mask's box {list(bbox)}")
        sl = tuple(slice(lo[i], lo[i] + changed[i + 3] - changed[i]) for i in range(3))
        patch[sl] = _unpack(message.get("patch", ""), _box_shape(changed))
    return Prediction(bbox, patch, shape, timings=timings)


def _bounding_box(mask: np.ndarray) -> tuple[int, ...]:
    """Half-open box of the True voxels (EMPTY if none); here, not from annotation (engines sit below it)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return EMPTY
    lo, hi = [], []
    for axis in range(3):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    return (*lo, *hi)


def _crop(pred: Prediction, bbox) -> np.ndarray:
    out = np.zeros(_box_shape(bbox), bool)
    if tuple(pred.bbox) == EMPTY:
        return out
    lo = [max(bbox[i], pred.bbox[i]) for i in range(3)]
    hi = [min(bbox[i + 3], pred.bbox[i + 3]) for i in range(3)]
    if any(h <= low for low, h in zip(lo, hi)):
        return out
    src = tuple(slice(lo[i] - pred.bbox[i], hi[i] - pred.bbox[i]) for i in range(3))
    dst = tuple(slice(lo[i] - bbox[i], hi[i] - bbox[i]) for i in range(3))
    out[dst] = pred.patch[src]
    return out


# --- prompts ---------------------------------------------------------------------------------
def prompts_to_json(prompts: Prompts) -> dict:
    msg = {
        "points": [[float(v) for v in p] for p in prompts.points],
        "labels": [int(v) for v in prompts.labels],
        "boxes": [{"axis": b.axis, "index": b.index, "r0": b.r0, "c0": b.c0, "r1": b.r1, "c1": b.c1}
                  for b in prompts.boxes],
    }
    if prompts.mask is not None:
        bbox = _bounding_box(prompts.mask)
        sl = tuple(slice(bbox[i], bbox[i + 3]) for i in range(3))
        msg["mask"] = encode_mask(bbox, prompts.mask[sl] if bbox != EMPTY else None)
    return msg


def prompts_from_json(message, shape, max_points: int = 1000) -> Prompts:
    """Validated :class:`Prompts` from a JSON body; :class:`WireError` / :class:`PromptError` if bad."""
    if not isinstance(message, dict):
        raise WireError("the prompt body is a JSON object with 'points', 'labels' and optionally 'boxes'")
    unknown = set(message) - {"points", "labels", "boxes", "mask"}
    if unknown:
        raise WireError(f"unknown prompt fields: {', '.join(sorted(map(str, unknown)))}")
    points = message.get("points", [])
    labels = message.get("labels", [])
    if not isinstance(points, list) or not isinstance(labels, list):
        raise WireError("'points' is a list of [z, y, x] and 'labels' a list of 0/1")
    if len(points) > max_points:
        raise WireError(f"at most {max_points} points per request")
    try:
        pts = np.array(points, dtype=float).reshape(-1, 3) if points else np.zeros((0, 3))
        if pts.shape[0] != len(points):
            raise ValueError
        labs = np.array([int(v) if isinstance(v, (int, bool)) else _bad() for v in labels], dtype=int)
    except (TypeError, ValueError, OverflowError):
        raise WireError("'points' is a list of [z, y, x] numbers and 'labels' a list of 0/1 integers") from None
    raw_boxes = message.get("boxes") or []
    if not isinstance(raw_boxes, list):
        raise WireError("'boxes' is a list of {axis, index, r0, c0, r1, c1} objects")
    raw_mask = message.get("mask")
    if raw_mask is not None and not isinstance(raw_mask, dict):
        raise WireError("'mask' is an object {bbox, patch}")
    boxes = []
    for b in raw_boxes:
        if not isinstance(b, dict):
            raise WireError("a box is an object {axis, index, r0, c0, r1, c1}")
        try:
            box = Box(int(b["axis"]), int(b["index"]), float(b["r0"]), float(b["c0"]), float(b["r1"]), float(b["c1"]))
        except (KeyError, TypeError, ValueError):
            raise WireError("a box is an object {axis, index, r0, c0, r1, c1} of numbers") from None
        if box.axis not in (0, 1, 2) or not all(map(math.isfinite, (box.r0, box.c0, box.r1, box.c1))):
            raise WireError("a box's axis is 0, 1 or 2 and its corners finite numbers")
        boxes.append(box)
    mask = decode_mask(raw_mask, tuple(shape)) if raw_mask is not None else None
    prompts = Prompts(pts, labs, boxes, mask)  # raises PromptError for mismatched lengths / labels
    prompts.check_inside(tuple(shape))
    return prompts


def _bad():
    raise ValueError


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


__all__ = [
    "PromptError",
    "WireError",
    "apply_update",
    "decode_mask",
    "decode_volume",
    "encode_mask",
    "encode_update",
    "encode_volume",
    "prompts_from_json",
    "prompts_to_json",
]
