"""Evaluation: re-code generated creatures with the discovery centroids (EMR, CoSim)."""
