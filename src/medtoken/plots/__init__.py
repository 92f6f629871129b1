"""Pictures: prediction overlays, training curves, token maps, benchmark charts (matplotlib)."""
