"""Expected failures: a plain-text file kept in the adopter's repository.

One entry per line, three whitespace-separated fields, the reason required::

    # backend     check (rule/category/name, shell patterns)      reason
    my-backend    shomr/gradient/shomr_straight_through            straight-through lands in 0.3 (#12)
    *             */distribution/*_eval_sample_*                   no stochastic eval mode

A failing (or erroring) check matched by an entry is reported ``xfail`` with the
reason; a passing one ``xpass``. An entry that matches no failing check is
*stale* and warned about, so the file shrinks as the backend improves.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    backend: str
    check: str
    reason: str
    line: int

    def matches(self, backend: str, check_id: str) -> bool:
        return fnmatch.fnmatchcase(backend, self.backend) and fnmatch.fnmatchcase(
            check_id, self.check
        )


def parse(text: str, source: str = "<xfail>") -> list[Entry]:
    """Entries of an expected-failures file; raises ``ValueError`` naming a line without a reason."""
    entries = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        if len(fields) < 3:
            raise ValueError(
                f"{source}:{i}: expected 'BACKEND CHECK REASON' (a reason is required); "
                f"received {raw!r}"
            )
        entries.append(Entry(fields[0], fields[1], fields[2], i))
    return entries


def load(path: str | Path) -> list[Entry]:
    path = Path(path)
    return parse(path.read_text(), str(path))


def apply(rows: list[dict], entries: list[Entry]) -> list[str]:
    """Mark matched rows ``xfail``/``xpass`` in place; returns warnings about stale entries."""
    used: set[int] = set()
    for row in rows:
        entry = next((e for e in entries if e.matches(row["backend"], row["id"])), None)
        if entry is None:
            continue
        if row["status"] in ("fail", "error"):
            used.add(entry.line)
            row["status"] = "xfail"
            row["message"] = f"expected failure ({entry.reason}): {row['message']}"
        elif row["status"] == "pass":
            row["status"] = "xpass"
            row["message"] = f"expected to fail ({entry.reason}) but passes"
    return [
        f"stale expected-failure entry at line {e.line} ({e.backend} {e.check}): it matches no "
        "failing check; remove it"
        for e in entries
        if e.line not in used
    ]
