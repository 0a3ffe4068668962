"""Line numbers for dotted key paths of a TOML document (tomllib does not keep positions).

One pass over the text, character by character, with an explicit stack instead of recursion: the
time is linear in the size of the file whatever it holds (no regular expression here can
backtrack), and the depth of nesting is measured on the way, so a file nested thousands of levels
deep is refused before `tomllib`, which recurses, reads it. The scanner never raises; on malformed
text its answer is approximate, and `tomllib` reports the actual error.
"""

from __future__ import annotations

import re

import attrs

# The longest key path recorded. Longer paths are never keys of a study (they are reported by the
# validator from the parsed document all the same); skipping them keeps the table of lines linear in
# the size of the file even when one long quoted key prefixes thousands of inline tables.
MAX_PATH = 256

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SPACE = re.compile(r"[ \t]*")
_SCALAR_END = re.compile(r"[,\]}#\s]")


@attrs.frozen
class Layout:
    """Where each key path of a document starts, and how deeply the document nests."""

    lines: dict[str, int]
    depth: int
    too_deep: int | None = None  # line where the nesting first went past the limit


def key_lines(source: str) -> dict[str, int]:
    """Map every table and key path (arrays of tables indexed, e.g. `mapping[1].depth`) to its line."""
    return scan(source).lines


def scan(source: str, max_depth: int | None = None) -> Layout:
    """Key paths with their lines, and the nesting depth (stops early past `max_depth`)."""
    return _Scanner(source, max_depth).run()


def locate(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest enclosing key that has one.

    `mapping[0].depth` is also looked for as `mapping.depth`, for a `[mapping]` table written
    where an array of tables is expected (the validator reads it as the array's only element).
    """
    if len(path) > MAX_PATH:  # no longer path is recorded: start from the nearest that may be
        cut = max(path.rfind(".", 0, MAX_PATH + 1), path.rfind("[", 0, MAX_PATH + 1))
        path = path[:cut] if cut > 0 else ""
    while path:
        for candidate in (path, path.replace("[0]", "")):
            if candidate in lines:
                return lines[candidate]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def _is_date(token: str) -> bool:
    return len(token) == 10 and token[4] == "-" and token[7] == "-"


def _join(prefix: str | None, part: str) -> str | None:
    """`prefix.part`; None (not recorded) once a path grows past `MAX_PATH`."""
    if prefix is None or len(prefix) + len(part) >= MAX_PATH:
        return None
    return f"{prefix}.{part}" if prefix else part


@attrs.define
class _Frame:
    """An open array (`[`) or inline table (`{`) while a value is being read."""

    kind: str
    path: str | None
    level: int  # the nesting level of what the container holds
    index: int = 0  # arrays: the element being read
    key_path: str | None = None  # inline tables: the key whose value is being read
    key_level: int = 0


def _element(frame: _Frame) -> str | None:
    if frame.path is None or len(frame.path) >= MAX_PATH:
        return None
    return f"{frame.path}[{frame.index}]"


class _Scanner:
    def __init__(self, source: str, max_depth: int | None) -> None:
        self.s = source
        self.n = len(source)
        self.i = 0
        self.line = 1
        self.max_depth = max_depth
        self.depth = 0
        self.too_deep: int | None = None
        self.lines: dict[str, int] = {}
        self.arrays: dict[str, int] = {}  # array-of-tables path -> index of its latest element

    # -- the document ---------------------------------------------------------------------------

    def run(self) -> Layout:
        table: str | None = ""
        level = 0
        while self.i < self.n and self.too_deep is None:
            self.skip_space_and_comments()
            if self.i >= self.n:
                break
            if self.s[self.i] == "[":
                table, level = self.header(self.line)
            else:
                self.keyval(table, level, self.line)
            self.skip_rest_of_line()
        return Layout(self.lines, self.depth, self.too_deep)

    def header(self, line: int) -> tuple[str | None, int]:
        """`[a.b]` or `[[a.b]]`: the table's path and the nesting level of its keys."""
        double = self.s.startswith("[[", self.i)
        self.i += 2 if double else 1
        parts = self.key()
        self.skip_blank()
        self.i += 2 if double and self.s.startswith("]]", self.i) else 1
        if not parts:
            return None, 0
        path, arrays = self.resolve(parts[:-1])
        level = len(parts) + arrays + int(double)
        if not self.deepen(level, line):
            return None, 0
        path = _join(path, parts[-1])
        if double and path is not None:
            index = self.arrays.get(path, -1) + 1
            self.arrays[path] = index
            self.record(path, line)  # `[[study]]` is located by `study` as well as `study[0]`
            path = f"{path}[{index}]"
        self.record(path, line)
        return path, level

    def resolve(self, parts: list[str]) -> tuple[str | None, int]:
        """A header's path with the latest index of every array of tables on the way."""
        path: str | None = ""
        arrays = 0
        for part in parts:
            path = _join(path, part)
            if path is not None and path in self.arrays:
                path = f"{path}[{self.arrays[path]}]"
                arrays += 1
        return path, arrays

    def keyval(self, prefix: str | None, level: int, line: int) -> None:
        """`a.b = value`: record `prefix.a`, `prefix.a.b`, then the value's own keys."""
        parts = self.key()
        if not parts:
            return
        path = prefix
        for part in parts:
            path = _join(path, part)
            self.record(path, line)
        if not self.deepen(level + len(parts), line):
            return
        self.skip_blank()
        if self.i < self.n and self.s[self.i] == "=":
            self.i += 1
            self.value(path, level + len(parts))

    def value(self, path: str | None, level: int) -> None:
        """Skip one value; arrays and inline tables are walked with a stack, not recursion.

        Keys of inline tables are recorded (`data.params.n_items`), and so are inline tables that
        are elements of an array (`mapping[1]`, `mapping[1].depth`). `level` is the nesting level
        of the value itself; what a container holds is one level deeper.
        """
        stack: list[_Frame] = []
        expect_value = True
        while self.i < self.n and self.too_deep is None:
            in_array = bool(stack) and stack[-1].kind == "["
            if expect_value:
                self.skip_space_and_comments() if in_array else self.skip_blank()
                if self.i >= self.n:
                    return
                c = self.s[self.i]
                if c in "[{":
                    self.i += 1
                    if stack:  # where this container sits: an array element or an inline key
                        top = stack[-1]
                        path, level = (
                            (_element(top), top.level)
                            if in_array
                            else (top.key_path, top.key_level)
                        )
                    if not self.deepen(level + 1, self.line):
                        return
                    stack.append(_Frame(c, path, level + 1))
                    if c == "{":
                        if in_array:
                            self.record(path, self.line)
                        expect_value = self.inline_key(stack[-1])
                    continue
                if c == "]" and in_array:  # an empty array, or a comma before the bracket
                    expect_value = False
                    continue
                self.scalar()
                expect_value = False
                continue
            # After a value: a separator, a closing bracket, or the end of the key/value pair.
            if not stack:
                return
            frame = stack[-1]
            self.skip_space_and_comments() if in_array else self.skip_blank()
            if self.i >= self.n:
                return
            c = self.s[self.i]
            if c == ",":
                self.i += 1
                if in_array:
                    frame.index += 1
                    expect_value = True
                else:
                    expect_value = self.inline_key(frame)
                continue
            if c in "]}":
                self.i += 1
                stack.pop()
                if not stack:
                    return
                continue
            return  # malformed: tomllib says what is wrong

    def inline_key(self, frame: _Frame) -> bool:
        """Inside `{ ... }`: read `key =`, noting where its value goes; False if there is none."""
        self.skip_blank()
        parts = self.key()
        self.skip_blank()
        if not parts or self.i >= self.n or self.s[self.i] != "=":
            return False
        self.i += 1
        path = frame.path
        for part in parts:
            path = _join(path, part)
            self.record(path, self.line)
        frame.key_path, frame.key_level = path, frame.level + len(parts) - 1
        return self.deepen(frame.key_level, self.line)

    def scalar(self) -> None:
        s, i = self.s, self.i
        if s.startswith('"""', i):
            self.multiline('"""')
        elif s.startswith("'''", i):
            self.multiline("'''")
        elif s[i] == '"':
            self.basic_string()
        elif s[i] == "'":
            self.literal_string()
        else:
            match = _SCALAR_END.search(s, i)
            self.i = match.start() if match else self.n
            if self.i == i:  # a character no value starts with: step over it
                self.i += 1
            elif (
                _is_date(s[i : self.i])
                and s.startswith(" ", self.i)
                and s[self.i + 1 : self.i + 2].isdigit()
            ):
                match = _SCALAR_END.search(s, self.i + 1)  # `1979-05-27 07:32:00`: one value
                self.i = match.start() if match else self.n

    # -- keys -----------------------------------------------------------------------------------

    def key(self) -> list[str]:
        """A dotted key: bare or quoted parts separated by `.` (spaces allowed around dots)."""
        parts: list[str] = []
        while True:
            self.skip_blank()
            if self.i >= self.n:
                return parts
            c = self.s[self.i]
            if c == '"':
                start = self.i + 1
                self.basic_string()
                parts.append(self.s[start : max(start, self.i - 1)])
            elif c == "'":
                start = self.i + 1
                self.literal_string()
                parts.append(self.s[start : max(start, self.i - 1)])
            else:
                match = _BARE.match(self.s, self.i)
                if not match:
                    return parts
                parts.append(match.group())
                self.i = match.end()
            self.skip_blank()
            if self.i < self.n and self.s[self.i] == ".":
                self.i += 1
                continue
            return parts

    # -- strings and space ----------------------------------------------------------------------

    def basic_string(self) -> None:
        """`"..."` with backslash escapes; stops at the end of the line if unterminated."""
        s, n = self.s, self.n
        i = self.i + 1
        while i < n:
            c = s[i]
            if c == "\\":
                i += 2
            elif c == '"':
                self.i = i + 1
                return
            elif c in "\r\n":
                break
            else:
                i += 1
        self.i = min(i, n)

    def literal_string(self) -> None:
        end = self.s.find("'", self.i + 1)
        newline = self.s.find("\n", self.i + 1)
        if end < 0 or (0 <= newline < end):
            self.i = newline if newline >= 0 else self.n
        else:
            self.i = end + 1

    def multiline(self, quote: str) -> None:
        s, n = self.s, self.n
        i = self.i + 3
        while i < n:
            if quote == '"""' and s[i] == "\\":
                if i + 1 < n and s[i + 1] == "\n":
                    self.line += 1
                i += 2
                continue
            if s.startswith(quote, i):
                i += 3
                extra = 0
                while extra < 2 and i < n and s[i] == quote[0]:  # """a"""" ends with one quote
                    i += 1
                    extra += 1
                self.i = i
                return
            if s[i] == "\n":
                self.line += 1
            i += 1
        self.i = n

    def skip_blank(self) -> None:
        self.i = _SPACE.match(self.s, self.i).end()

    def skip_comment(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = self.n if end < 0 else end

    def newline(self) -> None:
        if self.s[self.i] == "\n":
            self.line += 1
        self.i += 1

    def skip_space_and_comments(self) -> None:
        """Blanks, line ends and comments: between the document's lines, and inside an array
        (arrays may span lines and hold comments between their values)."""
        while self.i < self.n:
            self.skip_blank()
            if self.i >= self.n:
                return
            c = self.s[self.i]
            if c in "\r\n":
                self.newline()
            elif c == "#":
                self.skip_comment()
            else:
                return

    def skip_rest_of_line(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = self.n if end < 0 else end

    # -- bookkeeping ----------------------------------------------------------------------------

    def record(self, path: str | None, line: int) -> None:
        if path is not None:
            self.lines.setdefault(path, line)

    def deepen(self, depth: int, line: int) -> bool:
        """Note a nesting depth; False (and stop) once it passes the limit."""
        self.depth = max(self.depth, depth)
        if self.max_depth is not None and depth > self.max_depth:
            self.too_deep = self.too_deep or line
            return False
        return True
