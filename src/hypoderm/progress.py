"""Progress bars that suit where the output goes.

On a terminal: tqdm, cleared when done. Elsewhere (a log file, CI, `| tee`): plain lines, one per
~10% step and one at the end, so a log never fills with carriage-return redraws and never keeps a
stale "decoding: 0%" line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TextIO


class PlainProgress:
    """A tqdm-like counter that prints `desc: n/total (p%)` lines at every 10% step and at the end."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, step: float = 0.1) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if isinstance(iterable, Sized) else None)
        self.desc, self.unit, self.file, self.step = desc, unit, file or sys.stderr, step
        self.n, self._next, self._postfix, self._closed = 0, step, "", False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, **kw: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def write(self, message: str, file: TextIO | None = None) -> None:
        print(message, file=file or self.file, flush=True)

    def _line(self) -> str:
        where = (f"{self.n}/{self.total} {self.unit} ({self.n / self.total:.0%})" if self.total
                 else f"{self.n} {self.unit}")
        return f"{self.desc}: {where}" + (f" [{self._postfix}]" if self._postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n < self.total and self.n / self.total >= self._next:
            print(self._line(), file=self.file, flush=True)
            while self.n / self.total >= self._next:
                self._next += self.step

    def close(self) -> None:
        if not self._closed and self.n:
            print(self._line() + " done", file=self.file, flush=True)
        self._closed = True


class _Off:
    """The disabled bar: every call does nothing (tqdm(disable=True) without importing tqdm)."""

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable or ())

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kw: Any) -> None: ...

    def write(self, message: str, file: TextIO | None = None) -> None:
        print(message, file=file or sys.stderr, flush=True)

    def close(self) -> None: ...


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", disable: bool = False, file: TextIO | None = None) -> Any:
    """tqdm on a terminal, PlainProgress otherwise, a no-op when `disable`."""
    if disable:
        return _Off(iterable)
    stream = file or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, file=stream)
