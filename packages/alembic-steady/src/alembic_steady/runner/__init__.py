"""What `make migrate` runs: the environment env.py calls, the lock and retries through the
dialect, guards, signals, progress and the wording of failures; `api` and `cli` for code and
images."""
