"""Contouring operations applied to a :class:`StructureSet`, as one undoable step each.

:func:`plan` computes an operation's result without touching the set (that is the preview) and
returns a :class:`ContourEdit`: the output structure's name, its mask before (None when it is new)
and after, the inputs and the parameters. :meth:`ContourEdit.apply` writes it, :meth:`revert`
undoes it exactly, so an annotation session can record it as one step. Inputs may be locked (they
are only read); a locked output is refused before anything is computed.

Operations and their parameters (distances in mm):

==================  ======  =========================================================================
name                inputs  parameters
==================  ======  =========================================================================
margin              1       ``margin``: a :class:`Margin` (or ``mm``: a number, negative shrinks)
ring                1       ``inner``, ``outer``: mm or :class:`Margin` (e.g. 5 and 15)
union               2+
intersect           2+
subtract            2+      the first minus the others
xor                 2+      symmetric difference
interpolate         1       ``axis`` (z, y, x; default z), ``drawn`` (slice indices; default non-empty)
smooth              1       ``mm``: the surface moves by at most this much
fill-holes          1       ``mode``: 2d or 3d (default 3d), ``axis`` for 2d
largest             1       ``count`` (default 1), ``connectivity`` (1, 2, 3; default 1)
remove-islands      1       ``min_cm3``, ``connectivity``
==================  ======  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..masks import SparseMask
from ..structure_set import LockedStructureError, StructureSet, StructureSetError
from . import booleans, cleanup
from ._common import ContouringError
from .interpolate import interpolate_slices
from .margins import Margin, margin, ring


def _margin(masks, geometry, p):
    spec = p.get("margin")
    if spec is None:
        if "mm" not in p:
            raise ContouringError("margin needs a distance: mm=... or margin=Margin(...)")
        spec = Margin.isotropic(float(p["mm"]))
    return margin(masks[0], geometry, spec)


OPERATIONS = {
    "margin": (1, 1, _margin),
    "ring": (1, 1, lambda m, g, p: ring(m[0], g, p.get("inner", 0.0), p["outer"])),
    "union": (2, None, lambda m, g, p: booleans.union(*m)),
    "intersect": (2, None, lambda m, g, p: booleans.intersection(*m)),
    "subtract": (2, None, lambda m, g, p: booleans.subtract(*m)),
    "xor": (2, None, lambda m, g, p: booleans.symmetric_difference(*m)),
    "interpolate": (1, 1, lambda m, g, p: interpolate_slices(m[0], g, p.get("axis", "z"), p.get("drawn"))),
    "smooth": (1, 1, lambda m, g, p: cleanup.smooth(m[0], g, float(p["mm"]))),
    "fill-holes": (1, 1, lambda m, g, p: cleanup.fill_holes(m[0], p.get("mode", "3d"), p.get("axis", "z"))),
    "largest": (1, 1, lambda m, g, p: cleanup.keep_largest(m[0], int(p.get("count", 1)), int(p.get("connectivity", 1)))),
    "remove-islands": (1, 1, lambda m, g, p: cleanup.remove_islands(
        m[0], g, float(p["min_cm3"]), int(p.get("connectivity", 1)))),
}
"""name -> (least inputs, most inputs or None, function(masks, geometry, params) -> SparseMask)."""


def run_operation(name: str, masks, geometry, **params) -> SparseMask:
    """Run operation ``name`` on masks (no structure set involved; used by the CLI)."""
    try:
        least, most, fn = OPERATIONS[name]
    except KeyError:
        raise ContouringError(f"unknown operation {name!r} (known: {', '.join(OPERATIONS)})") from None
    masks = list(masks)
    if len(masks) < least or (most is not None and len(masks) > most):
        wanted = f"{least}" if least == most else f"{least} or more"
        raise ContouringError(f"{name} takes {wanted} structure(s), got {len(masks)}")
    try:
        return fn(masks, geometry, params)
    except KeyError as err:
        raise ContouringError(f"{name} needs the parameter {err.args[0]!r}") from None


@dataclass
class ContourEdit:
    """One operation's effect on a structure set: enough to apply, preview and undo it.

    Attributes:
        operation, inputs, params: what was asked.
        output: the structure written (new, or an existing unlocked one, possibly an input).
        after: its mask after the operation; ``before``: its mask before (None if it is new).
        color: the colour a new structure gets (None: the set's next default colour).
    """

    operation: str
    inputs: tuple[str, ...]
    output: str
    after: SparseMask
    before: SparseMask | None = None
    params: dict = field(default_factory=dict)
    color: str | None = None

    @property
    def created(self) -> bool:
        return self.before is None

    @property
    def affected(self) -> list[str]:
        """The structure names this edit changes (for an undo step's record)."""
        return [self.output]

    def record(self) -> dict:
        """A JSON-able description (prompt logs, session history)."""
        params = {k: (v.radii if isinstance(v, Margin) else v) for k, v in self.params.items()}
        if isinstance(self.params.get("margin"), Margin):
            params["shrink"] = self.params["margin"].shrink
        return {"operation": self.operation, "inputs": list(self.inputs), "output": self.output,
                "params": params, "voxels": self.after.count}

    def apply(self, structures: StructureSet) -> None:
        if self.created:
            structures.add(self.output, self.after, self.color, prompts=[self.record()])
        else:
            structures.set_mask(self.output, self.after)
            structures.structure(self.output).prompts.append(self.record())

    def revert(self, structures: StructureSet) -> None:
        """Undo :meth:`apply` exactly (the structure removed, or its mask and log put back)."""
        if self.created:
            structures.remove(self.output)
        else:
            structures.set_mask(self.output, self.before)
            prompts = structures.structure(self.output).prompts
            if prompts and prompts[-1] == self.record():
                prompts.pop()


def plan(structures: StructureSet, operation: str, inputs, output: str, *, color=None, **params) -> ContourEdit:
    """Compute ``operation`` on the named ``inputs`` into ``output`` without changing the set."""
    inputs = tuple(inputs)
    if not isinstance(output, str) or not output.strip():
        raise StructureSetError("the output needs a structure name")
    output = output.strip()
    before = None
    if output in structures:
        if structures.is_locked(output):
            raise LockedStructureError(f"{output!r} is locked; choose another output name or unlock it")
        before = structures.sparse(output)
    masks = [structures.sparse(name) for name in inputs]
    after = run_operation(operation, masks, structures.geometry, **params)
    return ContourEdit(operation, inputs, output, after, before, dict(params), color)


def apply_operation(structures: StructureSet, operation: str, inputs, output: str, **params) -> ContourEdit:
    """:func:`plan` then :meth:`ContourEdit.apply`; returns the edit (keep it to undo)."""
    edit = plan(structures, operation, inputs, output, **params)
    edit.apply(structures)
    return edit


__all__ = ["OPERATIONS", "ContourEdit", "apply_operation", "plan", "run_operation"]
