"""segment_anything's prompt encoder, mask decoder and two-way transformer, without torchvision.

``import segment_anything.modeling`` first runs ``segment_anything/__init__.py``, which imports the
automatic mask generator and through it torchvision. torchvision is not ours to need: it is absent
from a CPU-only environment, or present as a build that does not load beside the installed torch
(an import error, or worse a native crash). The network modules themselves use torch only, so we
load the package's ``modeling`` folder under a private module name and leave the public
``segment_anything`` name alone (a user's own ``import segment_anything`` still gets the real thing).

The classes are segment_anything's own, so the state-dict keys are those of the official checkpoints.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_ALIAS = f"{__name__}._modeling"


def _load_modeling():
    if _ALIAS in sys.modules:
        return sys.modules[_ALIAS]
    spec = importlib.util.find_spec("segment_anything")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 2D models need the segment-anything package: pip install segment-anything")
    folder = Path(next(iter(spec.submodule_search_locations))) / "modeling"
    modeling_spec = importlib.util.spec_from_file_location(
        _ALIAS, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(modeling_spec)
    sys.modules[_ALIAS] = module  # before exec: its relative imports (.common, ...) resolve under it
    try:
        modeling_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(_ALIAS, None)
        raise
    return module


modeling = _load_modeling()
"""``segment_anything.modeling`` itself (also ``Sam``, ``ImageEncoderViT``: tests compare against them)."""
MaskDecoder = modeling.MaskDecoder
PromptEncoder = modeling.PromptEncoder
TwoWayTransformer = modeling.TwoWayTransformer

__all__ = ["MaskDecoder", "PromptEncoder", "TwoWayTransformer"]
