"""Maintainer tools of a creaturekit source checkout (not part of the installed package).

Run from the repository root, e.g. ``python -m tools.toy.train_base``; product code
never imports from here.
"""
