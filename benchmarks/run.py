#!/usr/bin/env python3
"""Run every qfstack benchmark and print its figures (`make bench`).

A benchmark is a module in this directory with a `main(argv) -> int`; add its
name to BENCHMARKS.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["detection", "lifecycle"]


def main() -> int:
    sys.path.insert(0, str(HERE))
    status = 0
    for name in BENCHMARKS:
        module = importlib.import_module(name)
        status |= int(module.main([]))
    return status


if __name__ == "__main__":
    sys.exit(main())
