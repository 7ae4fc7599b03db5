"""What became of each target: as a terminal table, Markdown (a CI job summary), or JSON."""

import json
from collections import Counter
from dataclasses import asdict, dataclass

# Outcomes: what a rerun of `fleet upgrade` does with the target.
AT_HEAD = "at head"  # nothing to do (skipped)
UPGRADED = "upgraded"
FAILED = "failed"  # the runner's message says why; a rerun retries it
INTERRUPTED = "interrupted"  # a signal stopped it; its statement was cancelled
NOT_RUN = "not run"  # the policy or a signal stopped the rollout before it
BEHIND = "behind"  # (status) pending revisions
UNREADABLE = "unreadable"  # (status) its revision could not be read
DRIFTED = "drifted"  # (status --drift) its schema differs from the models
UNKNOWN = "unknown revision"  # (status) at a revision no file here has (a newer release's)
DONE = (AT_HEAD, UPGRADED)


@dataclass(frozen=True)
class Outcome:
    target: str
    outcome: str
    before: tuple[str, ...] | None  # None where it could not be read
    after: tuple[str, ...] | None
    seconds: float = 0.0
    error: str | None = None
    wave: str = ""  # "canary", "wave 1", ...


def revisions(heads: tuple[str, ...] | None) -> str:
    if heads is None:
        return "?"
    return ", ".join(heads) if heads else "base"


def summary(outcomes: list[Outcome]) -> str:
    counts = Counter(outcome.outcome for outcome in outcomes)
    parts = [f"{counts[name]} {name}" for name in sorted(counts)]
    return f"{len(outcomes)} targets: {', '.join(parts) or 'none'}"


def _rows(outcomes: list[Outcome]) -> list[list[str]]:
    return [
        [
            outcome.target,
            outcome.outcome,
            revisions(outcome.before),
            revisions(outcome.after),
            f"{outcome.seconds:.2f}",
            (outcome.error or "").splitlines()[0] if outcome.error else "",
        ]
        for outcome in outcomes
    ]


HEADER = ["target", "outcome", "from", "to", "seconds", "error"]


def as_text(outcomes: list[Outcome]) -> str:
    rows = [HEADER, *_rows(outcomes)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join([*lines, summary(outcomes)]) + "\n"


def as_markdown(outcomes: list[Outcome]) -> str:
    def cell(value: str) -> str:
        return value.replace("|", "\\|")

    lines = [
        "## Fleet",
        "",
        summary(outcomes),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(cell(value) for value in row) + " |" for row in _rows(outcomes)),
    ]
    return "\n".join(lines) + "\n"


def as_json(outcomes: list[Outcome]) -> str:
    return (
        json.dumps(
            {"summary": summary(outcomes), "targets": [asdict(o) for o in outcomes]}, indent=2
        )
        + "\n"
    )


FORMATS = {"text": as_text, "md": as_markdown, "json": as_json}
