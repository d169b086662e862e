"""CMFA training internals: config, toy data, sampling, checkpoints, DDP and the loop.

The command-line front doors are :mod:`training.train` and :mod:`training.evaluate`.
"""
