"""The chaos run's side table and task."""
