"""``python -m creaturekit`` (also what ``accelerate launch -m creaturekit`` runs)."""

from creaturekit.cli import main

main()
