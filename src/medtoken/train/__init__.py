"""Training: the loop, optimisation, checkpoints and run folders."""
