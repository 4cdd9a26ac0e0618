"""Typed errors. Every error a user can cause is a :class:`CreatureKitError`.

The CLI turns these into a one- or two-sentence message and exit code 1; anything
else is a bug and is shown with a traceback only under ``--debug``.
"""

from __future__ import annotations


class CreatureKitError(Exception):
    """Base class: a problem the user can fix; ``str(err)`` is the message shown."""

    exit_code = 1


class ProjectNotFoundError(CreatureKitError):
    """No ``creaturekit.toml`` in the given folder or any parent."""


class ProjectExistsError(CreatureKitError):
    """``init`` on a folder that already holds a project."""


class ProjectLockedError(CreatureKitError):
    """Another creaturekit command is changing this project right now."""


class ConfigError(CreatureKitError):
    """``creaturekit.toml`` is malformed or holds an invalid value."""


class ImageSourceError(CreatureKitError):
    """An image source is missing, empty or unreadable."""


class ModelNotFoundError(CreatureKitError):
    """Model weights could not be found locally or on the hub."""


class StageMissingError(CreatureKitError):
    """A stage was asked for before the stage it depends on ran (e.g. fit before discover)."""


class DamagedFileError(CreatureKitError):
    """A file creaturekit wrote earlier is truncated, corrupt or of the wrong shape."""


class UnsafePathError(CreatureKitError):
    """A name or path would reach outside the project folder."""
