"""The development stack: the run and test commands and the embedded PostgreSQL and Redis they
start. It imports nothing of the service (it runs it as processes)."""
