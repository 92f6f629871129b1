"""Side-by-side speed, memory and FLOP measurement of models."""
