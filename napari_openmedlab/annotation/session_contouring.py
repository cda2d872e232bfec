"""Contouring operations as :class:`~.requests.Contour` requests of an :class:`AnnotationSession`.

Each operation is one :class:`~.changes.SessionStep`: a new output structure is a
:class:`StructureAdded`, an existing one a :class:`MaskChange` plus its log record, so Undo and
Redo take it back and forth across structures like every other edit. A locked output is refused
before anything is computed (inputs may be locked: they are only read).

A view that previews an operation on a worker thread can hand the result over with
:func:`offer_plan`; the session then writes it without computing it again, provided the inputs
and the output are still the very masks it was computed from.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from .changes import MaskChange, PromptLogged, SessionStep
from .contouring import ContourEdit, Margin, plan
from .contouring.margins import parse_sides
from .masks import SparseMask
from .structure_set import LockedStructureError, StructureSet

_offered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plan_params(params: dict) -> dict:
    """The request's JSON parameters as :func:`plan` takes them (``sides`` becomes a Margin)."""
    out = dict(params)
    if "sides" in out:
        sides = out.pop("sides")
        out["margin"] = parse_sides(sides) if isinstance(sides, str) else Margin.sides(*sides)
    return out


def request_params(params: dict) -> dict:
    """:func:`plan` parameters as JSON (a Margin becomes signed ``sides``): the inverse of
    :func:`plan_params`."""
    out = dict(params)
    m = out.pop("margin", None)
    if isinstance(m, Margin):
        out["sides"] = [-r if m.shrink else r for r in m.radii]
    elif m is not None:
        out["margin"] = m
    return out


@dataclass
class PlannedContour:
    """A computed operation and the masks it was computed from (by identity: masks are replaced,
    never changed in place, so an unchanged structure still holds the same object)."""

    request: object
    edit: ContourEdit
    masks: dict

    def still_valid(self, structures: StructureSet) -> bool:
        for name in (*self.request.inputs, self.request.output):
            if (name in structures) != (name in self.masks):
                return False
            if name in structures and structures.sparse(name) is not self.masks[name]:
                return False
        return True


def plan_request(structures: StructureSet, request) -> PlannedContour:
    """Compute ``request`` (a :class:`Contour`) without changing the set; safe on a worker thread."""
    names = (*request.inputs, request.output)
    masks = {n: structures.sparse(n) for n in names if n in structures}  # before planning: see still_valid
    edit = plan(structures, request.operation, request.inputs, request.output, **plan_params(request.params))
    return PlannedContour(request, edit, masks)


def offer_plan(session, planned: PlannedContour) -> None:
    """Let ``session`` write ``planned`` for its request instead of computing it again."""
    _offered[session] = planned


def handle_contour(session, r):
    from .session import Outcome

    ss = session.structures
    if r.output in ss and ss.is_locked(r.output):
        raise LockedStructureError(f"{r.output!r} is locked; choose another output name or unlock it")
    planned = _offered.pop(session, None)
    if planned is None or planned.request != r or not planned.still_valid(ss):
        planned = plan_request(ss, r)
    edit = planned.edit
    record = edit.record()
    if edit.created:
        s = ss.add(edit.output, edit.after, edit.color, label_id=session._free_id(), prompts=[record])
        changes = [session._added(s)]
        box = None if edit.after.empty else edit.after.bbox
    else:
        old: SparseMask = ss.sparse(edit.output)
        changes = []
        diff = MaskChange.between(edit.output, old, edit.after)
        if diff is not None:
            ss.set_mask(edit.output, edit.after)
            changes.append(diff)
        ss.structure(edit.output).prompts.append(record)
        changes.append(PromptLogged(edit.output, record))
        box = diff.bbox if diff is not None else None
    session.history.push(SessionStep(f"{r.operation} into {edit.output}", changes))
    session._autosave()
    size = edit.after.count * float(np.prod(ss.geometry.spacing)) / 1000.0
    return Outcome(r, [edit.output], box, order_changed=edit.created,
                   message=f"{r.operation} into {edit.output}: {size:.2f} cm3", record=record)
