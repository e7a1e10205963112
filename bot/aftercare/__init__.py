"""After the steps: verification, notifications, stability monitoring, reminders, post-mortem."""
