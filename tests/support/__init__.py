"""Helpers shared by tests (and benchmarks): one copy each."""
