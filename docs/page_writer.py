"""The command line every page generator in docs/ shares: write the page, or `--check` that it is current.

Why: each generator is run by hand after a change and by the tests; one main keeps their flags and messages alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_or_check(out: Path, text: str, script: str, argv=None) -> int:
    """Write `text` to `out`; with --check, exit 1 (and say which command regenerates it) when `out` differs."""
    name, page = Path(script).name, out.relative_to(ROOT)
    p = argparse.ArgumentParser(description=f"write {page}")
    p.add_argument("--check", action="store_true", help=f"exit 1 if {page} is stale")
    args = p.parse_args(argv)
    if args.check:
        ok = out.exists() and out.read_text() == text
        print(f"{page} is up to date" if ok else f"{page} is stale: run python docs/{name}")
        return 0 if ok else 1
    out.write_text(text)
    print(f"wrote {page}")
    return 0
