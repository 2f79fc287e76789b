"""What every app shares: errors and their JSON shape, API input and schema helpers, JSON values,
the actor, the per-process state caches and the names of their states, Redis, metrics, the
operator endpoints and the admin base. It imports none of the apps."""
