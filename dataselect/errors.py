"""Errors that reach the user as one line (the CLI prints `error: <message>` and exits non-zero)."""
from __future__ import annotations


class DataselectError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class ConfigError(DataselectError):
    """A config key is unknown, missing or has a bad value; the message names the key."""


class InputError(DataselectError):
    """A bad input sample under `input.on_error: fail`, or an input path that cannot be read."""


class OutputError(DataselectError):
    """The selected rows cannot be written in the format asked for."""


class ScorerError(DataselectError):
    """A saved scorer folder is missing a file, damaged, or of a format this version cannot read."""
