"""Load tests and benchmarks for the serving path (run from the repository root)."""
