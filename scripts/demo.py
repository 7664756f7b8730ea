"""`make demo`: a bundled QuFabric + PocketID stack on local stand-in images.

Writes demo/setup.env once (later runs keep it and every secret), brings the
stack up with `qfstack up` and shows `qfstack status`. The images are local
stand-ins built from tests/images/, because the published images cannot be
pulled everywhere; an operator's real stack uses the published ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"

SETUP_ENV = """\
# The demo stack: QuFabric on localhost with a bundled PocketID.
QUFABRIC_DOMAIN=localhost
QFSTACK_BUNDLED_POCKETID=true
QFSTACK_DASHBOARD_HTTP_PORT=8080
QFSTACK_DASHBOARD_HTTPS_PORT=8443
QUFABRIC_AUTH_CLIENT_ID=qufabric-demo
QUFABRIC_TOKEN_SOURCE=idToken
QUFABRIC_DISABLE_ANONYMOUS_METRICS=true

# Local stand-in images (see tests/images/); remove these lines to use the
# published images.
QUFABRIC_DASHBOARD_IMAGE=qfstack-standin/dashboard
QUFABRIC_DASHBOARD_TAG=dev
QUFABRIC_SIGNAL_IMAGE=qfstack-standin/signal
QUFABRIC_SIGNAL_TAG=dev
QUFABRIC_RELAY_IMAGE=qfstack-standin/relay
QUFABRIC_RELAY_TAG=dev
QUFABRIC_MANAGEMENT_IMAGE=qfstack-standin/management
QUFABRIC_MANAGEMENT_TAG=dev
COTURN_IMAGE=qfstack-standin/coturn
COTURN_TAG=dev
QFSTACK_POCKETID_IMAGE=qfstack-standin/pocketid
QFSTACK_POCKETID_TAG=dev
"""


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    setup_env = DEMO / "setup.env"
    if not setup_env.exists():
        setup_env.write_text(SETUP_ENV)
        print(f"demo: wrote {setup_env.relative_to(ROOT)}", file=sys.stderr)
    qfstack = [sys.executable, "-m", "qfstack", "--dir", str(DEMO)]
    env = {**os.environ}
    code = subprocess.call([*qfstack, "up", "--timeout", "240"], env=env)
    if code != 0:
        return code
    subprocess.call([*qfstack, "status"], env=env)
    print(
        "demo: the stack runs on local stand-in images; stop it with `make demo-down`.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
