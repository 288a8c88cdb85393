"""The one exception root of cclpilot. Every error cclpilot raises on purpose derives from it."""

from __future__ import annotations


class CclpilotError(Exception):
    """Base of every error cclpilot raises on purpose."""


class ConfigError(CclpilotError):
    """A setting, option or input file is invalid; the message says what and how to fix it."""


class PluginLoadError(CclpilotError):
    """The plugin library could not be found or loaded, or lacks the expected symbols."""


class SimulationError(CclpilotError):
    """The simulator found an inconsistency (for example ranks that would hang)."""
