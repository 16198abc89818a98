"""Benchmarks of the routing engine at 10^6 prefixes (not part of the test suite)."""
