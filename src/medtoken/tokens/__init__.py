"""Token algorithms (selection, pruning, assembly, quantisation): pure tensor functions first."""
