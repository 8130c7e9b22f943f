"""Every error class of the backend, in one place.

``InputError`` is the base of what a user can fix (a bad name, a bad number, a damaged file they
gave): entry points show it as one line (CLI exit 2, a message in the page). Anything else that
escapes is a bug: an internal error with its traceback written to a log.

They stay ``ValueError`` subclasses so that callers written against ``ValueError`` keep working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input a user can fix; the message says what is wrong and what would be valid."""


class SweepError(InputError):
    """Sweep settings that cannot be used (layers, multipliers, split sizes, choices)."""


class DatasetError(InputError):
    """A dataset that cannot be found or read; the message names the file and the problem."""


class ModelError(InputError):
    """A model that cannot be found or loaded; the message says what is valid."""


class ValidationError(InputError):
    """Bad input found before any work; the message says what is valid."""


class NonFiniteError(InputError):
    """Numbers that are not finite where a fit needs finite ones."""


class TextError(InputError):
    """A neutral-text file that cannot be used; the message says what is expected."""


class ControlVectorError(InputError):
    """A control-vector or vector file that cannot be read or written."""


class StoreError(InputError):
    """A stored file or name that cannot be used as asked: it exists (``--force``/``--replace`` replace
    it), it is damaged (the message names the file), or its registry entry points outside its folder."""


class FastPathUnsupported(RuntimeError):
    """The fast path cannot serve this model or item; the caller falls back to the reference path."""
