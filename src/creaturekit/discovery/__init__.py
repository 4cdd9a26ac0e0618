"""Stage 1: unsupervised part and sub-concept discovery, with pluggable backends."""
