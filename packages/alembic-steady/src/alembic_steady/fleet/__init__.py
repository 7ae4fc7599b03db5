"""Migrating a fleet: the same revisions on many targets (tenant schemas of one database, or many
databases), those at head skipped, the others run by worker processes in a canary and waves, and
a report of each target's outcome.

    targets.py   what a target is, read from a file or a query; a pod's share of them
    status.py    every target's revision, read in one session per database (per server on MySQL)
    workers.py   the worker processes, each migrating one target at a time with the runner
    rollout.py   canary, waves, the on-error policy, signals
    report.py    the report: text, Markdown, JSON
    cli.py       `python -m <package>.migrations fleet upgrade|status`
"""
