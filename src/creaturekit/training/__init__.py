"""Stage 2: textual inversion through a projector, LoRA and the attention loss."""
