"""Running approved plans: the executor, its steps and retry policy, the leader scheduler.

Their errors are one tree, ``bot.execution.errors``."""
