"""Synthetic RGB + event data engine: head assets, renderer, motion, camera and event models."""
