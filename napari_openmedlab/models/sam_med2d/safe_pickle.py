"""The restricted unpickler and zip reader behind safe checkpoint loading: no pickled code runs.

A torch ``.pth`` (zip) file is opened with :mod:`zipfile` and its ``data.pkl`` is read with our
own :class:`pickle.Unpickler` subclass (:class:`RestrictedUnpickler`) whose ``find_class`` never
imports anything:

* tensor and container rebuild functions are replaced by our own inert implementations that
  only record *where* a tensor's bytes are (nothing is read yet: :class:`LazyTensor`);
* a few plain types (dict, list, OrderedDict, ...) and torch dtype names are allowed;
* classes of training state we expect and drop (``torch.optim.*``, grad scalers, argparse
  namespaces, numpy scalars, ...) become inert placeholders that are never called;
* anything else (``os.system``, ``builtins.exec``, ``subprocess.*`` ...) makes the reader stop
  with :class:`UnsafeCheckpointError` right there, before it is used. With
  ``allow_unknown_globals=True`` such names also become inert placeholders instead, and are
  still never called; but a placeholder is never accepted as a weight.

:class:`ZipCheckpoint` holds the unpickled tree and reads a tensor's bytes from the archive only
when asked (:meth:`ZipCheckpoint.materialise`), so the optimizer's moments are never loaded.
Choosing the state dict in the tree is :mod:`.checkpoint`'s job.
"""

from __future__ import annotations

import builtins
import io
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = ["LazyTensor", "RestrictedUnpickler", "ZipCheckpoint"]

_MAX_PICKLE_BYTES = 256 * 1024 * 1024


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


class LazyTensor:
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
    return LazyTensor(storage, storage_offset, _int_tuple(size, "size"), _int_tuple(stride, "stride"))


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


class RestrictedUnpickler(pickle.Unpickler):
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


class ZipCheckpoint:
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
        unpickler = RestrictedUnpickler(io.BytesIO(self.zf.read(pkls[0])), self._ref, allow_unknown_globals)
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
            if isinstance(lazy, LazyTensor) and isinstance(lazy.storage, _StorageRef):
                self._uses[lazy.storage.key] = self._uses.get(lazy.storage.key, 0) + 1

    def materialise(self, lazy: LazyTensor) -> torch.Tensor:
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
