"""How `xmodal query` writes a result: csv, json and markdown text (the table view is rich's).

Values are written as DuckDB returned them: a float as Python's shortest repr (`0.837`, not
`0.8370`), a DECIMAL with its digits (`1.50`), text verbatim. Nothing here interprets markup.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
import unicodedata
import uuid
from collections.abc import Sequence
from typing import Any

# DuckDB type names (as `QueryResult.types` spells them) whose values are numbers.
_NUMERIC = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
    "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
)  # fmt: skip


def is_numeric(duckdb_type: str) -> bool:
    """Whether a column of this DuckDB type holds numbers (shown right-aligned)."""
    return duckdb_type.split("(")[0].strip().upper() in _NUMERIC


def text(value: Any) -> str:
    """One value as text, as the query computed it (NULL is the empty string)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double
    if isinstance(value, bytes | bytearray | memoryview):
        return blob_text(bytes(value))
    return str(value)


def blob_text(value: bytes) -> str:
    r"""A BLOB as DuckDB prints it: printable ASCII as is, other bytes as `\xAB`."""
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02X}" for b in value)


def visible(value: str) -> str:
    """Control characters (an ESC could drive the terminal) as escapes; newlines and tabs kept."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else repr(ch)[1:-1] for ch in value
    )


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV with `\\n` line ends: a header, then one line per row (NULL is empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([text(v) for v in row] for row in rows)
    return buffer.getvalue()


def json_value(value: Any) -> Any:
    """A value JSON can hold: NaN and ±inf become null (JSON has no such numbers), DECIMAL a
    number, dates and times ISO 8601 text, BLOB text as `blob_text`, lists and structs nested."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return blob_text(bytes(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def to_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array of objects, one per row, keys in column order."""
    records = [
        {column: json_value(v) for column, v in zip(columns, row, strict=True)} for row in rows
    ]
    return json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _markdown_cell(value: str) -> str:
    return visible(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def to_markdown(columns: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured pipe table: numeric columns right-aligned, `|` escaped, a newline in a
    value as `<br>`, NULL as `NULL`."""
    header = "| " + " | ".join(_markdown_cell(c) for c in columns) + " |"
    rule = "| " + " | ".join("---:" if is_numeric(t) else "---" for t in types) + " |"
    lines = [header, rule]
    for row in rows:
        cells = ("NULL" if v is None else _markdown_cell(text(v)) for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
