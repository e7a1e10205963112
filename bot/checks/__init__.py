"""Verification checks: the result type and runner, HTTP probes, the runbook's suite."""
