"""Hostile conditions: fuzzed and forged Slack input, floods, slow platforms, late writes."""
