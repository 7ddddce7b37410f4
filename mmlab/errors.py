"""mmlab's error types: every bad input becomes one of these, with a message that names
the file, key or parameter that was wrong and what was expected."""

from __future__ import annotations


class MMLabError(Exception):
    """Base class of every error mmlab raises on purpose (the CLI prints it without a traceback)."""


class ConfigError(MMLabError, ValueError):
    """A config file or override is malformed, names an unknown key, or has the wrong type."""


class DataError(MMLabError, ValueError):
    """A dataset, feature file or batch does not match the data contract."""


class UnknownDatasetError(DataError, KeyError):
    """A dataset name is neither registered nor a path to a readable file."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class UnsafePickleError(DataError):
    """A pickle asked for a type outside the restricted unpickler's allow-list."""
