"""The CLI's argument parser class: one home that `blackbox-zo` and `blackbox-zo prefer` both build on.

It lives apart from `cli` so that `prefer` registers its subcommands without importing the CLI module.
"""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other user error (usage stays under --help)."""

    def error(self, message: str):
        self.exit(2, f"blackbox-zo: error: {message} (see: {self.prog} --help)\n")
