"""What `make migration` and `make check` load (never an upgrade): the safe operations, the
autogenerate hooks, the normalised comparison and the offline literals."""
