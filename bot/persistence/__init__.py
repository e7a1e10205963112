"""Our own PostgreSQL: pool and migrations, stores, jobs, outbox, retention."""
