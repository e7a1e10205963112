"""What people ask for in Slack: request, approve, reject, cancel, checklist, timers."""
