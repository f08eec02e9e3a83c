"""Text from outside, made safe to log and to print: a request's path, method and headers, a payload's
fields, the API's answers, an exception's message.

Such text can hold a newline (which forges a log line of its own), an ANSI or OSC escape sequence (which
recolours, rewrites or retitles the terminal that shows it), a bidi override (which reverses what follows
on screen) or a NUL (which PostgreSQL cannot store). `printable` writes every such character as the
escape `repr` would give it, without the quotes, so it shows and does nothing, and cuts the text to a
length. `PrintableTracebacks` does the same for the exception text of a logged traceback.
"""

import logging
import traceback
from collections.abc import Iterator
from types import TracebackType

DEFAULT_LIMIT = 200  # characters: enough for any id, path or name worth reading in a log line
CUT = "…"  # ends a text that was cut


def printable(value: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """`value` as text with each character that is not printable written as its escape: `\\n`, `\\x1b`,
    `\\x9b`, `\\u2028`, `\\u202e`, `\\x00`. Not printable is `str.isprintable`'s sense, as for `repr`: the
    C0 and C1 controls (ESC and CSI among them, so an escape sequence loses its first character and shows
    as text), DEL, the line and paragraph separators, format characters such as the bidi overrides, and
    spaces other than the plain one. Every other character, the backslash too, stays as it is, so the
    text stays readable and printing it twice changes nothing.

    Longer than `limit` characters, it is cut to that length, ending in "…" (never inside an escape);
    None keeps it whole.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the usual case, checked in C
        return text if limit is None or len(text) <= limit else text[: limit - 1] + CUT
    pieces = [ch if ch.isprintable() else repr(ch)[1:-1] for ch in text]
    if limit is None or sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) > limit - 1:
            break
        kept.append(piece)
        length += len(piece)
    return "".join(kept) + CUT


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class PrintableTracebacks(logging.Formatter):
    """A log formatter whose tracebacks keep their lines, while each exception's own text is printable: a
    message that quotes the API or a payload (a handler's, a library's) cannot forge the next log line.
    The stack's lines come from the source files and stay as they are. (An exception group's members are
    left out.)"""

    def formatException(self, ei: ExcInfo) -> str:
        if ei[1] is None:
            return super().formatException(ei)
        return "".join(_traceback_lines(traceback.TracebackException.from_exception(ei[1]))).rstrip("\n")


def _traceback_lines(exc: traceback.TracebackException) -> Iterator[str]:
    """What traceback.format_exception gives, the exception texts made printable."""
    if exc.__cause__ is not None:
        yield from _traceback_lines(exc.__cause__)
        yield "\nThe above exception was the direct cause of the following exception:\n\n"
    elif exc.__context__ is not None and not exc.__suppress_context__:
        yield from _traceback_lines(exc.__context__)
        yield "\nDuring handling of the above exception, another exception occurred:\n\n"
    if exc.stack:
        yield "Traceback (most recent call last):\n"
        yield from exc.stack.format()
    for line in exc.format_exception_only():
        yield printable(line.removesuffix("\n"), limit=None) + "\n"
