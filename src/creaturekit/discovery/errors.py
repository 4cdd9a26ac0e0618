"""Errors of the discovery stage (all :class:`~creaturekit.errors.CreatureKitError`)."""

from __future__ import annotations

from creaturekit.errors import CreatureKitError


class DiscoveryDataError(CreatureKitError):
    """The images cannot support the requested discovery (too few, identical, M too large)."""


class NotFittedError(CreatureKitError):
    """A discoverer was used to encode before it was fitted or loaded."""


class DiscoveryResultError(CreatureKitError):
    """The project's discovery result is missing, incomplete or from another version."""
