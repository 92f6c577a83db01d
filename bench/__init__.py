"""Gruppetto benchmarks: each module prints one JSON object with figures and targets."""
