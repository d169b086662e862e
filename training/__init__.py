"""Offline tooling: synthetic data engine, datasets, SSMER pretraining, CMFA training, eval."""
