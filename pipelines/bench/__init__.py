"""Benchmarks: per-stage wall time, peak memory and row counts; ratio to bare Splink."""
