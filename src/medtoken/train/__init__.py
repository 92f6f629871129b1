"""Training: the loop, optimisation, activation checkpointing, memory estimate and run folders.

Checkpoint files are written and read by :mod:`medtoken.models.checkpoint` (below training, so
that prediction and export load models without importing the trainer).
"""
