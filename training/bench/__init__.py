"""Benchmarks: figures measured side by side with reference implementations."""
