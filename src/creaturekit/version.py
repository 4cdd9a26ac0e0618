"""The version of creaturekit (a leaf module every other one may import)."""

__version__ = "0.1.0"
