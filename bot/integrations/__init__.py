"""Clients of other systems the runbook reads: Prometheus, the target service's database.

Their errors are one tree, ``bot.integrations.errors``."""
