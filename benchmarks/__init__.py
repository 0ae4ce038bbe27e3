"""Benchmarks: what the scheduler and memory manager buy, measured side by side in one run."""
