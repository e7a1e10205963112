"""Benchmarks that run side by side against a baseline and print ratios and percentiles."""
