"""Prometheus metrics: counters each process keeps, and the text endpoint."""
