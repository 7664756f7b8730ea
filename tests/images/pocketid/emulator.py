#!/usr/bin/env python3
"""A PocketID stand-in for qfstack's tests: same endpoints, answers and failures.

It emulates PocketID 1.16.x and 2.x (see shared/reference/pocketid.md): the
OIDC discovery document and JWKS, ``/healthz``, the rate limit, and the REST API
that qfstack uses (users, API keys, OIDC clients and their secrets, user groups,
first-admin setup, one-time sign-in links). It does not implement the browser
sign-in flows (``/authorize``, tokens, passkeys).

Usage, configured only through environment variables:

    emulator.py                                 serve; prints "listening on URL"
    emulator.py healthcheck                     what ``pocket-id healthcheck`` does
    emulator.py one-time-access-token USER      print APP_URL/lc/<token>

The image runs it as ``/app/pocket-id`` with the same arguments.

PocketID's own variables:
    PORT (1411), HOST (0.0.0.0), APP_URL (http://localhost:1411; lowercased,
    trailing slash stripped, a path is refused), INTERNAL_APP_URL (1.11+),
    ENCRYPTION_KEY / ENCRYPTION_KEY_FILE (required by 2.x, >= 16 bytes; 2.x also
    refuses to start when it differs from the key the data was created with),
    STATIC_API_KEY / STATIC_API_KEY_FILE (2.2+, >= 16 characters: a hidden
    admin "Static API User" whose key it is), DISABLE_RATE_LIMITING (2.2+),
    TRUST_PROXY (take the client address from X-Forwarded-For).

The emulator's own variables:
    EMU_VERSION (2.14.0)        the PocketID version to behave like (1.x or 2.x)
    EMU_DATA_DIR (/app/data)    key and state (JSON) are kept here
    EMU_START_DELAY (0)         seconds to wait before listening
    EMU_ISSUER                  issuer value announced in discovery
    EMU_EMPTY_JWKS=1            JWKS is {"keys": []}
    EMU_MALFORMED_JWKS=1|key    JWKS is cut-off JSON (1) or a key of garbage (key)
    EMU_HTML_DISCOVERY=1        discovery answers 200 with an HTML page
    EMU_DISCOVERY_OMIT=a,b      discovery leaves out these fields
    EMU_NO_S256=1               code_challenge_methods_supported is ["plain"]
    EMU_TLS_CERT, EMU_TLS_KEY   serve HTTPS with this certificate and key
    EMU_RATE_LIMIT_LOCALHOST=1  rate-limit loopback clients too
    EMU_SEED                    JSON, inline or a file path, added at start

EMU_SEED schema (every list optional; seeding skips what already exists, so
restarting with the same seed changes nothing):

    {
      "users": [{
        "username": "admin",            required, unique
        "email": "a@x.test",            optional
        "firstName": "...",             default: the username
        "lastName": "...",              optional
        "isAdmin": true,                default false
        "disabled": false,              default false
        "id": "...",                    default: a new UUID
        "apiKeys": [{
          "token": "...",               required: the secret sent as X-API-KEY
          "name": "...",                default "Seeded API key"
          "description": "...",         optional
          "expiresAt": "2027-06-01T00:00:00Z"   default: a year from now;
                                                may lie in the past
        }]
      }],
      "groups": [{"name": "...", "friendlyName": "...", "id": "...",
                  "members": ["username", ...]}],
      "clients": [{"id": "...", "name": "...", "callbackURLs": [...],
                   "logoutCallbackURLs": [...], "isPublic": false,
                   "pkceEnabled": false, "launchURL": "...",
                   "requiresReauthentication": false,
                   "description": "...", "isGroupRestricted": true,
                   "secret": "...",                   a client secret
                   "allowedUserGroups": ["group name or id", ...]}]
    }

Exit status 1 with a message on stderr when the configuration is refused.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pocketid_emu.api import issue_one_time_token
from pocketid_emu.app import Application
from pocketid_emu.server import listening_url, log, make_server
from pocketid_emu.settings import ConfigError, Settings
from pocketid_emu.startup import StartupError, prepare
from pocketid_emu.store import Store, find_user


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _stop)
    store = Store(settings.data_dir)
    api = prepare(settings, store)

    if settings.start_delay > 0:
        log(f"waiting {settings.start_delay:g} s before listening (EMU_START_DELAY)")
        time.sleep(settings.start_delay)
    server = make_server(settings, Application(settings, api))

    url = listening_url(settings, server)
    log(f"pocket-id emulator {settings.version_text}, APP_URL {settings.app_url}")
    print(f"listening on {url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def healthcheck(settings: Settings) -> int:
    """1.x fails only when nothing answers; 2.x also on a non-2xx status."""
    url = f"{settings.scheme}://localhost:{settings.port}/healthz"
    context = None
    if settings.tls_cert:
        # A self-check over loopback: the certificate names the public host.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        print(f"healthcheck failed: {error}", file=sys.stderr)
        return 1
    if settings.at_least(2) and not 200 <= status < 300:
        print(f"healthcheck failed: status {status}", file=sys.stderr)
        return 1
    return 0


def one_time_access_token(settings: Settings, who: str) -> int:
    with Store(settings.data_dir).transaction() as state:
        user = find_user(state, who)
        if user is None:
            print(f"user {who!r} not found", file=sys.stderr)
            return 1
        token = issue_one_time_token(state, user)
    print(f"{settings.app_url}/lc/{token}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pocket-id", description="PocketID emulator (configured by env vars)"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("healthcheck", help="check that the server answers")
    token = commands.add_parser(
        "one-time-access-token", help="print a one-hour sign-in link for a user"
    )
    token.add_argument("user", help="username or email")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        if args.command == "healthcheck":
            return healthcheck(settings)
        if args.command == "one-time-access-token":
            return one_time_access_token(settings, args.user)
        return serve(settings)
    except (ConfigError, StartupError) as error:
        print(f"pocket-id: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
