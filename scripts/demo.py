"""`make demo`: a bundled QuFabric + PocketID stack on local stand-in images.

Writes demo/setup.env once (later runs keep it and every secret), brings the
stack up with `qfstack up` (which provisions PocketID's client, creates its
first admin and prints a one-time sign-in link) and shows `qfstack status`.
The images are local stand-ins built from tests/images/, because the
published images cannot be pulled everywhere; an operator's real stack uses
the published ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"

# Local stand-in images (see tests/images/); an operator's stack leaves these
# out and gets the published images.
STANDIN_IMAGES = {
    "QUFABRIC_DASHBOARD_IMAGE": "qfstack-standin/dashboard",
    "QUFABRIC_SIGNAL_IMAGE": "qfstack-standin/signal",
    "QUFABRIC_RELAY_IMAGE": "qfstack-standin/relay",
    "QUFABRIC_MANAGEMENT_IMAGE": "qfstack-standin/management",
    "COTURN_IMAGE": "qfstack-standin/coturn",
    "QFSTACK_POCKETID_IMAGE": "qfstack-standin/pocketid",
}
TAGS = (
    "QUFABRIC_DASHBOARD_TAG",
    "QUFABRIC_SIGNAL_TAG",
    "QUFABRIC_RELAY_TAG",
    "QUFABRIC_MANAGEMENT_TAG",
    "COTURN_TAG",
    "QFSTACK_POCKETID_TAG",
)
SETTINGS = {
    "QFSTACK_DASHBOARD_HTTP_PORT": "8080",
    "QFSTACK_DASHBOARD_HTTPS_PORT": "8443",
    "QUFABRIC_DISABLE_ANONYMOUS_METRICS": "true",
    **STANDIN_IMAGES,
    **dict.fromkeys(TAGS, "dev"),
}


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    qfstack = [sys.executable, "-m", "qfstack", "--dir", str(DEMO)]
    if not (DEMO / "setup.env").exists():
        assignments = [
            arg
            for name, value in SETTINGS.items()
            for arg in ("--set", f"{name}={value}")
        ]
        init = [
            *qfstack,
            "init",
            "--bundled-pocketid",
            "--non-interactive",
            *assignments,
        ]
        code = subprocess.call(init)
        if code != 0:
            return code
    env = {**os.environ}
    code = subprocess.call([*qfstack, "up", "--timeout", "240"], env=env)
    if code != 0:
        return code
    subprocess.call([*qfstack, "status"], env=env)
    print(
        "demo: the stack runs on local stand-in images; stop it with `make demo-down`."
        "\ndemo: PocketID's admin signs in with the link the first `up` printed; "
        "for a new one: qfstack --dir demo pocketid sign-in-link",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
