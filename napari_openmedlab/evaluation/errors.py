"""Typed errors of the evaluation: inputs that would give a score that cannot be right."""


class EvaluationInputError(ValueError):
    """A label map or an option makes the evaluation meaningless (e.g. a CT given as labels)."""
