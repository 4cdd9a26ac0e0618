"""Stage 3: compose creatures from (part, code) requests with a fitted run."""
