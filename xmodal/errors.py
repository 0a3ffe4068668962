"""Errors a user can cause and fix. The CLI renders them on one screen and exits non-zero."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import attrs


class XmodalError(Exception):
    """A user-facing error: its message is the whole explanation, no traceback is shown."""

    exit_code = 1


@attrs.frozen
class Problem:
    """One thing wrong in a study file, located by its dotted key path."""

    path: str
    message: str
    allowed: str | None = None
    suggestion: str | None = None
    line: int | None = None
    notes: tuple[str, ...] = ()  # further lines of explanation, shown indented under the message


class StudyError(XmodalError):
    """Everything wrong with one study file, reported together."""

    exit_code = 2

    def __init__(self, file: str, problems: Iterable[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s) found"]
        for p in self.problems[:MAX_SHOWN]:
            where = f"{self.file}:{p.line}" if p.line else self.file
            key = f" {_cut(p.path)}:" if p.path else ""
            lines.append(f"  {where}:{key} {p.message}")
            lines.extend(f"      {note}" for note in p.notes)
            if p.allowed:
                lines.append(f"      allowed: {p.allowed}")
            if p.suggestion:
                lines.append(f"      did you mean {_cut(p.suggestion)!r}?")
        if len(self.problems) > MAX_SHOWN:
            lines.append(f"  … and {len(self.problems) - MAX_SHOWN} more problem(s)")
        return "\n".join(lines)


# A file with thousands of mistakes still gets an error that fits on a screen or two.
MAX_SHOWN = 40


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest known name to a misspelt one, if any is close enough."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def not_registered(noun: str, name: str, known: Iterable[str]) -> str:
    """The message for a name no loaded plugin registers: `<noun> 'name' is not registered (did
    you mean …?); registered: …`."""
    known = sorted(known)
    guess = did_you_mean(name, known)
    return (
        f"{noun} {name!r} is not registered"
        + (f" (did you mean {guess!r}?)" if guess else "")
        + f"; registered: {', '.join(known) or 'none'}"
    )
