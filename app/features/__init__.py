"""Online feature store: each user's recent events (Redis when ``REDIS_URL`` is set, else in-process)."""
