"""Line numbers for dotted key paths of a TOML document (tomllib does not keep positions)."""

from __future__ import annotations

import re

_ARRAY_TABLE = re.compile(r"^\[\[\s*([^\]]+?)\s*\]\]")
_TABLE = re.compile(r"^\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(
    r"""^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _dotted(text: str) -> str:
    parts = [
        p.strip().strip("\"'")
        for p in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", text)
    ]
    return ".".join(parts)


def key_lines(source: str) -> dict[str, int]:
    """Map every table and key path (arrays of tables indexed, e.g. `mapping[1].depth`) to its line."""
    lines: dict[str, int] = {}
    table = ""
    counters: dict[str, int] = {}
    for lineno, raw in enumerate(source.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if match := _ARRAY_TABLE.match(line):
            name = _dotted(match.group(1))
            counters[name] = counters.get(name, -1) + 1
            table = f"{name}[{counters[name]}]"
            lines.setdefault(table, lineno)
            continue
        if match := _TABLE.match(line):
            name = _dotted(match.group(1))
            # [mapping.params] after [[mapping]] belongs to the latest element of the array.
            for array, index in counters.items():
                if name.startswith(array + "."):
                    name = f"{array}[{index}]{name[len(array) :]}"
                    break
            table = name
            lines.setdefault(table, lineno)
            continue
        if match := _KEY.match(line):
            key = _dotted(match.group(1))
            lines.setdefault(f"{table}.{key}" if table else key, lineno)
    return lines


def locate(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest enclosing key that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None
