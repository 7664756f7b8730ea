#!/usr/bin/env python3
"""Start the QuFabric stand-in named by STANDIN_SERVICE, passing it the arguments.

Each image sets STANDIN_SERVICE (management, signal, relay, dashboard, coturn);
on the host: ``STANDIN_SERVICE=relay python3 tests/images/qufabric/run.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qf_standin import (
    coturn,
    dashboard,
    management,
    relay,
    signal_service,
)

SERVICES: dict[str, Callable[[Sequence[str]], int]] = {
    "management": management.start,
    "signal": signal_service.start,
    "relay": relay.start,
    "dashboard": dashboard.start,
    "coturn": coturn.start,
}


def main() -> int:
    service = os.environ.get("STANDIN_SERVICE", "")
    if service not in SERVICES:
        known = ", ".join(SERVICES)
        print(
            f"STANDIN_SERVICE must be one of {known}, not {service!r}", file=sys.stderr
        )
        return 2
    return SERVICES[service](sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
