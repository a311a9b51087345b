"""Benchmarks: each module prints its figures and writes them under benchmarks/results/."""
