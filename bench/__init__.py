"""Benchmarks: load scenarios run against a real server process on loopback (see README)."""
