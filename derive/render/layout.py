"""Lines of a rendered module kept within WIDTH columns, without changing what the code does.

A long code line breaks inside its outermost brackets, before a binary + or -, `if` or `else`, or
after a comma, and
continues 4 columns deeper; a trailing comment that does not fit goes on its own line above. Long
docstring and comment lines wrap at spaces. Parentheses are never added or moved, so the
expressions compile exactly as before.
"""

from __future__ import annotations

import textwrap

WIDTH = 100
CONTINUATION = " " * 8  # deeper than a block's body, so a continued line never reads as one


def wrap_module(text: str, width: int = WIDTH) -> str:
    out, in_docstring = [], False
    for line in text.split("\n"):
        quotes = line.count('"""')
        if in_docstring or quotes:
            out += _wrap_text(line, width) if len(line) > width else [line]
            in_docstring = in_docstring != (quotes % 2 == 1)
        elif len(line) <= width:
            out.append(line)
        elif line.lstrip().startswith("#"):
            out += _wrap_comment(line, width)
        else:
            out += _wrap_code(line, width)
    return "\n".join(out)


def _wrap_text(line: str, width: int) -> list[str]:
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(
        line.strip(),
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _wrap_comment(line: str, width: int) -> list[str]:
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(
        line.strip()[2:],
        width,
        initial_indent=indent + "# ",
        subsequent_indent=indent + "# ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _wrap_code(line: str, width: int) -> list[str]:
    indent = line[: len(line) - len(line.lstrip())]
    code, comment = _split_comment(line.strip())
    above = _wrap_comment(indent + comment, width) if comment else []
    return above + _wrap_pieces(code, indent, indent + CONTINUATION, width)


def _wrap_pieces(code: str, first: str, rest: str, width: int) -> list[str]:
    """`code` on lines starting with `first`, then `rest`; a continued line that is still too long
    breaks again inside its own brackets."""
    breaks = _breaks(code)
    if not breaks:
        return [first + code]
    pieces, start = [], 0
    for at in breaks + [len(code)]:
        pieces.append(code[start:at].strip())
        start = at
    lines, current = [], first + pieces[0]
    for piece in pieces[1:]:
        if len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = rest + piece
        else:
            current += " " + piece
    lines.append(current)
    wrapped = []
    for k, line in enumerate(lines):
        prefix = first if k == 0 else rest
        body = line[len(prefix) :]  # a strict part of `code` when there are several lines: this ends
        deeper = len(line) > width and len(lines) > 1 and _breaks(body)
        wrapped += _wrap_pieces(body, prefix, rest, width) if deeper else [line]
    return wrapped


def _split_comment(code: str) -> tuple[str, str]:
    """`code  # comment` -> (code, "# comment"); a # inside a string is not a comment."""
    quote = None
    for k, char in enumerate(code):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            return code[:k].rstrip(), code[k:]
    return code, ""


def _breaks(code: str) -> list[int]:
    """Where `code` may break: before ` + `, ` - `, ` if ` or ` else `, or after `, `, at the lowest
    bracket depth that has such a place (outside strings)."""
    places: dict[int, list[int]] = {}
    depth, quote = 0, None
    for k, char in enumerate(code):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth > 0 and code.startswith((" + ", " - ", " if ", " else "), k):
            places.setdefault(depth, []).append(k + 1)
        elif depth > 0 and code.startswith(", ", k):
            places.setdefault(depth, []).append(k + 2)
    return places[min(places)] if places else []
