"""Reading checkpoints without running pickled code, and a safetensors conversion cache.

Why: the official ``sam-med2d_b.pth`` is ``{"model": state_dict, "optimizer": <torch.optim.Adam
object>}``. The optimizer is a pickled Python object, so ``torch.load(weights_only=True)``
rejects the file, and ``weights_only=False`` would execute whatever the pickle names.

How: a torch ``.pth`` (zip) file is opened with :mod:`zipfile` and its ``data.pkl`` is read with
our own :class:`pickle.Unpickler` subclass whose ``find_class`` never imports anything:

* tensor and container rebuild functions are replaced by our own inert implementations that
  only record *where* a tensor's bytes are (nothing is read yet);
* a few plain types (dict, list, OrderedDict, ...) and torch dtype names are allowed;
* classes of training state we expect and drop (``torch.optim.*``, grad scalers, argparse
  namespaces, numpy scalars, ...) become inert placeholders that are never called;
* anything else (``os.system``, ``builtins.exec``, ``subprocess.*`` ...) makes the reader stop
  with :class:`UnsafeCheckpointError` right there, before it is used. With
  ``allow_unknown_globals=True`` such names also become inert placeholders instead, and are
  still never called; but a placeholder is never accepted as a weight.

Only the tensors of the chosen state dict are then read from the zip (the optimizer's moments
are never loaded). The result can be written once as a safetensors copy into a cache folder
with a JSON sidecar recording both files' SHA-256; later loads use that copy.

Bare state dicts (SAM's ``sam_vit_b_01ec64.pth``, MedSAM's ``medsam_vit_b.pth``) go through the
same reader. Files that are not zip archives (pre-1.6 torch format) are read with
``torch.load(weights_only=True)``; ``.safetensors`` files are read directly.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import logging
import os
import pickle
import re
import tempfile
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "check_state_dict",
    "convert_to_safetensors",
    "converted_paths",
    "load_state_dict",
    "load_weights",
    "read_checkpoint_globals",
    "read_state_dict",
    "sha256_file",
]

log = logging.getLogger(__name__)

CONVERSION_FORMAT = 1
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "module")
"""Where a state dict may sit inside a training checkpoint, in the order we look."""

_MAX_PICKLE_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 20

# ------------------------------------------------------------------ inert stand-ins


class _Placeholder:
    """Stands in for a class or function named by the pickle that we do not load.

    Building one records its arguments; nothing of the named object is imported or called.
    It supports exactly what the unpickler needs to keep going (construction, state, items).
    """

    _global = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state) -> None:
        self.__dict__["_state"] = state

    def append(self, item) -> None:
        pass

    def extend(self, items) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self._global}>"


def _placeholder_class(qualname: str) -> type:
    return type("NotLoaded", (_Placeholder,), {"_global": qualname, "__module__": __name__})


class _StorageType:
    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _StorageRef:
    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: torch.dtype, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


class _LazyTensor:
    """Where a tensor's bytes are: storage record, offset, size, stride. Read on demand."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _int_tuple(v, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(type(i) is int for i in v):
        raise CheckpointError(f"malformed tensor record: {what} is {type(v).__name__}")
    return tuple(v)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    if not isinstance(storage, _StorageRef):
        raise CheckpointError("malformed tensor record: its storage is not a storage reference")
    if type(storage_offset) is not int:
        raise CheckpointError("malformed tensor record: storage offset is not an integer")
    return _LazyTensor(storage, storage_offset, _int_tuple(size, "size"), _int_tuple(stride, "stride"))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # ``func`` came from our find_class: one of our rebuild functions or an inert placeholder
    if not isinstance(args, tuple):
        raise CheckpointError("malformed tensor record")
    return func(*args)


def _ordered_dict(*args):
    return OrderedDict(*args) if args else OrderedDict()


def _plain_dict(*args):  # defaultdict(factory) -> plain dict; the factory is never used
    return {}


def _latin1_encode(text, encoding="latin1"):  # how protocol-2 pickles spell bytes
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise CheckpointError(f"unexpected bytes encoding {encoding!r} in checkpoint")
    return text.encode("latin-1")


def _torch_size(*args):
    return tuple(*args)


def _device(*args):
    return str(args[0]) if args else "cpu"


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}
_DTYPE_NAMES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "double",
    "float",
    "half",
    "long",
    "int",
    "short",
)


def _safe_globals() -> dict[tuple[str, str], object]:
    table: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("collections", "defaultdict"): _plain_dict,
        ("_codecs", "encode"): _latin1_encode,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Size"): _torch_size,
        ("torch", "device"): _device,
    }
    for name in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "int",
        "float",
        "bool",
        "str",
        "complex",
        "slice",
    ):
        table[("builtins", name)] = getattr(builtins, name)
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(dtype)
    for name in _DTYPE_NAMES:
        table[("torch", name)] = getattr(torch, name)
    return table


_SAFE_GLOBALS = _safe_globals()

_DROPPED_MODULES = (
    "torch.optim",
    "torch.amp",
    "torch.cuda.amp",
    "torch.nn.modules",
    "apex",
    "argparse",
    "numpy",
    "collections",
)
"""Modules of training state we expect beside the weights; their objects become placeholders."""

_RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that never imports: see the module docstring for what each name becomes."""

    def __init__(self, file, storage_ref, allow_unknown_globals: bool) -> None:
        super().__init__(file)
        self._storage_ref = storage_ref
        self._allow_unknown = allow_unknown_globals
        self.dropped: set[str] = set()

    def find_class(self, module: str, name: str):
        module = _RENAMED_MODULES.get(module, module)
        qualname = f"{module}.{name}"
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
        expected = any(module == m or module.startswith(m + ".") for m in _DROPPED_MODULES)
        if not expected and not self._allow_unknown:
            raise UnsafeCheckpointError(
                f"checkpoint refers to {qualname!r}, which is neither weights nor known training "
                "state; refusing to read it (nothing from it was imported or run). Only use "
                "checkpoints from their official source.",
                [qualname],
            )
        self.dropped.add(qualname)
        return _placeholder_class(qualname)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent record in checkpoint: {type(pid).__name__}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or type(numel) is not int:
            raise CheckpointError("malformed storage record in checkpoint")
        return self._storage_ref(key, storage_type.dtype, numel)


# ------------------------------------------------------------------ zip reader


class _ZipCheckpoint:
    """A torch zip checkpoint: its unpickled tree (with lazy tensors) and its storage records."""

    def __init__(self, path: Path, allow_unknown_globals: bool = False) -> None:
        self.path = path
        self.zf = zipfile.ZipFile(path)
        pkls = [n for n in self.zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(f"{path.name}: not a torch checkpoint archive (found {len(pkls)} data.pkl)")
        self.prefix = pkls[0][: -len("data.pkl")]
        names = set(self.zf.namelist())
        if self.prefix + "byteorder" in names:
            order = self.zf.read(self.prefix + "byteorder").decode("ascii", "replace").strip()
            if order != "little":
                raise CheckpointError(f"{path.name}: byte order {order!r} is not supported")
        info = self.zf.getinfo(pkls[0])
        if info.file_size > _MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path.name}: data.pkl of {info.file_size} bytes is implausibly large")
        self._refs: dict[str, _StorageRef] = {}
        self._cache: dict[str, torch.Tensor] = {}
        self._uses: dict[str, int] = {}
        unpickler = _RestrictedUnpickler(io.BytesIO(self.zf.read(pkls[0])), self._ref, allow_unknown_globals)
        try:
            self.root = unpickler.load()
        except (CheckpointError, MemoryError):
            raise
        except Exception as err:  # malformed pickles: the reader stops, nothing was run
            raise CheckpointError(
                f"{path.name}: cannot read checkpoint pickle ({type(err).__name__}: {err})"
            ) from err
        self.dropped = sorted(unpickler.dropped)

    def _ref(self, key: str, dtype: torch.dtype, numel: int) -> _StorageRef:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
            raise CheckpointError(f"{self.path.name}: malformed storage key")
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = _StorageRef(key, dtype, numel)
        elif ref.dtype != dtype or ref.numel != numel:
            raise CheckpointError(f"{self.path.name}: storage {key} is used with two types")
        return ref

    def _storage(self, ref: _StorageRef) -> torch.Tensor:
        base = self._cache.get(ref.key)
        if base is None:
            itemsize = torch.empty((), dtype=ref.dtype).element_size()
            nbytes = ref.numel * itemsize
            try:
                raw = self.zf.read(f"{self.prefix}data/{ref.key}")
            except KeyError:
                raise CheckpointError(f"{self.path.name}: storage {ref.key} is missing") from None
            if len(raw) < nbytes:
                raise CheckpointError(f"{self.path.name}: storage {ref.key} is truncated")
            if nbytes == 0:
                base = torch.empty(0, dtype=ref.dtype)
            else:
                base = torch.frombuffer(bytearray(raw[:nbytes]), dtype=ref.dtype)
            if self._uses.get(ref.key, 0) > 1:  # shared storage: keep it for the other tensors
                self._cache[ref.key] = base
        return base

    def plan(self, lazies) -> None:
        """Say which tensors will be read, so storages used once are not kept around."""
        self._uses = {}
        for lazy in lazies:
            if isinstance(lazy, _LazyTensor) and isinstance(lazy.storage, _StorageRef):
                self._uses[lazy.storage.key] = self._uses.get(lazy.storage.key, 0) + 1

    def materialise(self, lazy: _LazyTensor) -> torch.Tensor:
        ref = lazy.storage
        if not isinstance(ref, _StorageRef) or self._refs.get(ref.key) is not ref:
            raise CheckpointError(f"{self.path.name}: malformed tensor record")
        size = _int_tuple(lazy.size, "size")
        stride = _int_tuple(lazy.stride, "stride")
        offset = lazy.offset
        if len(size) != len(stride) or type(offset) is not int or offset < 0:
            raise CheckpointError(f"{self.path.name}: malformed tensor record")
        if any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise CheckpointError(f"{self.path.name}: malformed tensor record (negative size/stride)")
        if 0 in size:
            return torch.empty(size, dtype=ref.dtype)
        last = offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= ref.numel:
            raise CheckpointError(f"{self.path.name}: tensor reaches past its storage {ref.key}")
        base = self._storage(ref)
        return torch.as_strided(base, size, stride, offset).clone(memory_format=torch.contiguous_format)

    def close(self) -> None:
        self._cache.clear()
        self.zf.close()


# ------------------------------------------------------------------ state dict extraction


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, (_LazyTensor, torch.Tensor)) for k, v in obj.items())
    )


def _select_state_dict(root, name: str) -> tuple[Mapping, str | None]:
    if _is_state_dict(root):
        return root, None
    if isinstance(root, Mapping):
        for key in STATE_DICT_KEYS:
            if key in root and _is_state_dict(root[key]):
                return root[key], key
        for key in STATE_DICT_KEYS:
            if key in root and isinstance(root[key], Mapping):
                bad = [k for k, v in root[key].items() if not isinstance(v, (_LazyTensor, torch.Tensor))]
                raise UnsafeCheckpointError(
                    f"{name}: entries of {key!r} are not tensors: {', '.join(map(str, bad[:8]))}; refusing it",
                    [repr(root[key][k]) for k in bad[:8]],
                )
        keys = ", ".join(map(repr, list(root)[:10]))
        raise CheckpointError(f"{name}: no state dict found (top-level keys: {keys})")
    raise CheckpointError(f"{name}: no state dict found (top level is {type(root).__name__})")


def _strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _read(path: Path, allow_unknown_globals: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict + facts about where it came from (``state_dict_key``, ``dropped_globals``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu"), {"state_dict_key": None, "dropped_globals": []}
    if not zipfile.is_zipfile(path):
        try:
            root = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"{path.name}: an old-format (non-zip) checkpoint holding more than weights; refusing it ({err})"
            ) from err
        except Exception as err:
            raise CheckpointError(f"{path.name}: cannot read as a torch checkpoint ({err})") from err
        sd, key = _select_state_dict(root, path.name)
        return _strip_module_prefix(dict(sd)), {"state_dict_key": key, "dropped_globals": []}
    ckpt = _ZipCheckpoint(path, allow_unknown_globals)
    try:
        lazy, key = _select_state_dict(ckpt.root, path.name)
        ckpt.plan(lazy.values())
        sd = {k: ckpt.materialise(v) for k, v in lazy.items()}
    finally:
        ckpt.close()
    return _strip_module_prefix(sd), {"state_dict_key": key, "dropped_globals": ckpt.dropped}


def read_state_dict(
    path: str | os.PathLike, *, allow_unknown_globals: bool = False
) -> dict[str, torch.Tensor]:
    """The weights in ``path`` (a bare state dict or ``{"model": state_dict, ...}``), on the CPU.

    No pickled code runs. Raises :class:`UnsafeCheckpointError` when the pickle names code that
    is not expected training state (see the module docstring), :class:`CheckpointError` when it
    is not a readable checkpoint. A ``module.`` prefix on every key (DataParallel) is removed.
    """
    return _read(Path(path), allow_unknown_globals)[0]


def read_checkpoint_globals(path: str | os.PathLike) -> list[str]:
    """Names of the non-weight objects a zip checkpoint's pickle refers to (dropped, never built)."""
    ckpt = _ZipCheckpoint(Path(path), allow_unknown_globals=True)
    try:
        return ckpt.dropped
    finally:
        ckpt.close()


# ------------------------------------------------------------------ conversion cache


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_paths(source: str | os.PathLike, cache_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(safetensors copy, JSON sidecar)`` for ``source`` in ``cache_dir``."""
    name = Path(source).name
    base = Path(cache_dir)
    return base / f"{name}.safetensors", base / f"{name}.safetensors.json"


def _read_sidecar(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == CONVERSION_FORMAT else None


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_is_valid(
    source: Path, converted: Path, meta: dict | None, expected_sha256: str | None, verify: bool
) -> bool:
    if meta is None or not converted.is_file() or converted.stat().st_size != meta.get("converted_size"):
        return False
    if expected_sha256 and meta.get("source_sha256") != expected_sha256.lower():
        return False
    if source.is_file():
        st = source.stat()
        if st.st_size != meta.get("source_size"):
            return False
        if st.st_mtime_ns != meta.get("source_mtime_ns") and sha256_file(source) != meta.get("source_sha256"):
            return False
    if verify and sha256_file(converted) != meta.get("converted_sha256"):
        return False
    return True


def convert_to_safetensors(
    source: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    allow_unknown_globals: bool = False,
    verify: bool = False,
) -> Path:
    """The safetensors copy of ``source``'s weights in ``cache_dir``, made on first use.

    The sidecar ``<name>.safetensors.json`` records the source's SHA-256, size and mtime, the
    copy's SHA-256 and size, which entry held the state dict and the dropped globals. A valid
    copy (same source size/mtime, or same hash after a touch) is reused without reading the
    source; ``verify`` re-hashes the copy as well. ``expected_sha256`` is checked against the
    source before converting (mismatch: :class:`CheckpointError`, nothing written).
    """
    source = Path(source)
    cache = Path(cache_dir)
    converted, sidecar = converted_paths(source, cache)
    meta = _read_sidecar(sidecar)
    if _cache_is_valid(source, converted, meta, expected_sha256, verify):
        return converted
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")

    st = source.stat()
    source_sha = sha256_file(source)
    if expected_sha256 and source_sha != expected_sha256.lower():
        raise CheckpointError(
            f"{source.name} has SHA-256 {source_sha}, expected {expected_sha256}; not using it"
        )
    state_dict, facts = _read(source, allow_unknown_globals)
    from safetensors.torch import save_file

    cache.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    _atomic_write(
        converted,
        lambda tmp: save_file(
            tensors, tmp, metadata={"source_sha256": source_sha, "source_name": source.name}
        ),
    )
    record = {
        "format": CONVERSION_FORMAT,
        "source_name": source.name,
        "source_path": str(source.resolve()),
        "source_size": st.st_size,
        "source_mtime_ns": st.st_mtime_ns,
        "source_sha256": source_sha,
        "converted_name": converted.name,
        "converted_size": converted.stat().st_size,
        "converted_sha256": sha256_file(converted),
        "state_dict_key": facts["state_dict_key"],
        "dropped_globals": facts["dropped_globals"],
        "num_tensors": len(tensors),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    log.info("converted %s to %s (sha256 %s)", source.name, converted, source_sha)
    return converted


def load_state_dict(
    source: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    expected_sha256: str | None = None,
    allow_unknown_globals: bool = False,
    verify: bool = False,
) -> dict[str, torch.Tensor]:
    """The weights of ``source``: through the safetensors cache when ``cache_dir`` is given.

    Without ``cache_dir`` the source is read directly each time (still without running code).
    """
    if cache_dir is None:
        if expected_sha256 and sha256_file(source) != expected_sha256.lower():
            raise CheckpointError(f"{Path(source).name} does not have SHA-256 {expected_sha256}")
        return read_state_dict(source, allow_unknown_globals=allow_unknown_globals)
    from safetensors.torch import load_file

    converted = convert_to_safetensors(
        source,
        cache_dir,
        expected_sha256=expected_sha256,
        allow_unknown_globals=allow_unknown_globals,
        verify=verify,
    )
    return load_file(str(converted), device="cpu")


# ------------------------------------------------------------------ into a network


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointMismatchError` unless keys and shapes match ``model`` exactly."""
    own = model.state_dict()
    missing = set(own) - set(state_dict)
    unexpected = set(state_dict) - set(own)
    mismatched = [
        (k, tuple(state_dict[k].shape), tuple(own[k].shape))
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, what=what)


def load_weights(
    model: nn.Module,
    source: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    expected_sha256: str | None = None,
    allow_unknown_globals: bool = False,
) -> nn.Module:
    """Read ``source`` safely, check it fits ``model`` exactly, and load it. Returns ``model``."""
    sd = load_state_dict(
        source, cache_dir, expected_sha256=expected_sha256, allow_unknown_globals=allow_unknown_globals
    )
    check_state_dict(model, sd, what=Path(source).name)
    model.load_state_dict(sd, strict=True)
    return model
