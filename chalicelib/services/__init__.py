"""Use cases of the engine: planning, querying, changing and running executors."""
