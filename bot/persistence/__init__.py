"""Our own PostgreSQL: pool and migrations, stores, jobs, outbox, retention.

Their errors are one tree, ``bot.persistence.errors``."""
