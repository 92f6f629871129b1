"""Sliding-window prediction of whole cases and folders."""
