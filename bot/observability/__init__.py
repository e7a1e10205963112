"""What operators see of the bot: Prometheus metrics and scrubbed logs."""
