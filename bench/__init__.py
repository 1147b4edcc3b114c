"""Performance benchmark of the proxy against a direct upstream connection (see BENCHMARKS.md)."""
