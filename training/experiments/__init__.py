"""Experiments whose results are tables in docs/ (each a script with its exact command)."""
