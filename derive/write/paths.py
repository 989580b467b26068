"""Where the toolkit's files are: every path decision in one place.

The same code runs from a source checkout (the repository, `pip install -e .` or not) and from
an installed wheel. A checkout has the single source of the templates at its top level and the
built-in `generated/` and `docs/cells/` that `generate` rebuilds and `check` compares; a wheel
carries the templates as package data (`derive/templates/`, mapped in pyproject.toml) and its
`generated/` is read-only: commands that rebuild it run from a checkout only.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # derive/
IMPORT_ROOT = PACKAGE.parent  # the folder `derive` is imported from: the checkout, or site-packages
CHECKOUT = IMPORT_ROOT  # the repository root, when `in_checkout()`

TEMPLATES = PACKAGE / "templates" if (PACKAGE / "templates").is_dir() else CHECKOUT / "templates"
RUNTIME = PACKAGE / "runtime"  # what generated cells import
GENERATED = CHECKOUT / "generated"  # the built-in cells' package, in a checkout
DOCS_CELLS = CHECKOUT / "docs" / "cells"  # one page per built-in cell, in a checkout
BENCHMARK_REPORT = CHECKOUT / "docs" / "benchmarks.md"


def in_checkout() -> bool:
    """True when `derive` is imported from a source checkout (not from an installed wheel)."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "templates").is_dir() and GENERATED.is_dir()


def require_checkout(what: str) -> None:
    """Stop with one line when `what` (a command) needs a source checkout and this is an install."""
    if not in_checkout():
        raise SystemExit(f"{what} works in a source checkout of rnn-derive only; derive is installed at {PACKAGE}")
