"""Benchmarks: re-runnable scripts behind every figure the project publishes."""
