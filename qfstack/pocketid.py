"""PocketID's REST API: who the key belongs to, OIDC clients, user groups.

`PocketIdClient` talks to one PocketID with an API key sent as `X-API-KEY`,
over a client from `oidc.http_client` (so TLS, `--resolve` and the rate limit
are the same as for discovery). It returns small dataclasses and raises
`PocketIdError` (an `IdentityProviderError`) with what to do.

The API key is held in an `ApiKey`, whose text is always masked: it never
appears in a message, a log line or an exception, even if PocketID echoes it.

PocketID 1.x and 2.x differ (see shared/reference/pocketid.md); the client
learns the version from what the server answers: `GET /api/version/current`
where it exists (newer than 2.14), else the fields only one version sends
(`isGroupRestricted` in a client: 2.x; `code` and `request_id` in an error:
2.13+). Callers ask `group_restricted_by_default` or `at_least` instead of
comparing versions, and `require_supported` refuses a 0.x or a 3.x.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

from qfstack.errors import IdentityProviderError
from qfstack.oidc import retry_after, send
from qfstack.provider import connection_verdict

logger = logging.getLogger(__name__)

PAGE_LIMIT = 100
MAX_PAGES = 1000
SUPPORTED_MAJORS = (1, 2)
Version = tuple[int, int, int]
KEY_HELP = (
    "create a new key as an admin in PocketID's web interface: Administration "
    "-> API Keys -> Add API Key (choose an expiry date), then put it in {where}."
)
ADMIN_HELP = (
    "use a key created by an admin (Administration -> API Keys), or make the "
    "key's owner an admin (Administration -> Users -> the user -> Admin)."
)


class ApiKey:
    """A PocketID API key; its text is masked everywhere but the header."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the X-API-KEY header and nothing else."""
        return self._value

    def redact(self, text: str) -> str:
        """`text` with the key replaced by a mask."""
        return text.replace(self._value, "********") if self._value else text

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "ApiKey('********')"

    __str__ = __repr__


class PocketIdError(IdentityProviderError):
    """A PocketID API call failed; `status` is the HTTP status, if any."""

    def __init__(
        self,
        check: str,
        message: str,
        *,
        status: int | None = None,
        fix: str = "",
        permanent: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(check, message, fix=fix, permanent=permanent)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    """A PocketID user, as `GET /api/users/me` reports it."""

    id: str
    username: str
    email: str
    display_name: str
    is_admin: bool
    disabled: bool
    groups: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> User:
        groups = data.get("userGroups") or []
        display = str(data.get("displayName") or "").strip()
        if not display:
            first = str(data.get("firstName") or "")
            display = f"{first} {data.get('lastName') or ''}".strip()
        return cls(
            id=str(data.get("id", "")),
            username=str(data.get("username", "")),
            email=str(data.get("email") or ""),
            display_name=display,
            is_admin=bool(data.get("isAdmin")),
            disabled=bool(data.get("disabled")),
            groups=tuple(str(g.get("name", "")) for g in groups if isinstance(g, dict)),
        )


@dataclass(frozen=True)
class UserGroup:
    """A PocketID user group."""

    id: str
    name: str
    friendly_name: str
    # Members, when the answer counts them (lists and client details do).
    user_count: int | None = None
    # Member ids, when the answer lists them (a single group's details do).
    member_ids: tuple[str, ...] | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> UserGroup:
        count = data.get("userCount")
        members = None
        if isinstance(data.get("users"), list):
            members = tuple(
                str(u.get("id", "")) for u in data["users"] if isinstance(u, dict)
            )
            if count is None:
                count = len(members)
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            friendly_name=str(data.get("friendlyName") or data.get("name", "")),
            user_count=int(count) if isinstance(count, int) else None,
            member_ids=members,
        )


@dataclass(frozen=True)
class ApiKeyInfo:
    """One of the caller's API keys, as `GET /api/api-keys` lists it."""

    id: str
    name: str
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ApiKeyInfo:
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name") or ""),
            expires_at=_time(data.get("expiresAt")),
            last_used_at=_time(data.get("lastUsedAt")),
        )


@dataclass(frozen=True)
class OidcClient:
    """An OIDC client as PocketID reports it (never with a secret)."""

    id: str
    name: str
    callback_urls: tuple[str, ...]
    logout_callback_urls: tuple[str, ...]
    is_public: bool
    pkce_enabled: bool
    # None on 1.x, which has no such setting (an empty group list lets all in).
    is_group_restricted: bool | None
    allowed_groups: tuple[UserGroup, ...]
    launch_url: str | None = None
    # The answer as PocketID sent it: an update sends back what qfstack does
    # not manage (logo, description, token lifetimes), since PUT replaces all.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> OidcClient:
        restricted = data.get("isGroupRestricted")
        groups = data.get("allowedUserGroups") or []
        launch = data.get("launchURL")
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            callback_urls=tuple(str(u) for u in data.get("callbackURLs") or []),
            logout_callback_urls=tuple(
                str(u) for u in data.get("logoutCallbackURLs") or []
            ),
            is_public=bool(data.get("isPublic")),
            pkce_enabled=bool(data.get("pkceEnabled")),
            is_group_restricted=restricted if isinstance(restricted, bool) else None,
            allowed_groups=tuple(
                UserGroup.from_api(g) for g in groups if isinstance(g, dict)
            ),
            launch_url=str(launch) if launch else None,
            raw=dict(data),
        )


class PocketIdClient:
    """One PocketID's REST API, authenticated with an API key.

    `key_source` names where the key comes from (a setup.env variable) so
    that messages can say what to change. `max_wait` bounds how long one call
    waits for the rate limit and for 429 `Retry-After` pauses.
    """

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        api_key: str | ApiKey,
        *,
        key_source: str = "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN",
        max_wait: float = 30.0,
        major: int | None = None,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)
        self.key_source = key_source
        self.max_wait = max_wait
        self._major = major
        # The exact version, when the server tells it; else the oldest version
        # its answers allow (2.13 once an error carries `request_id`).
        self._version: Version | None = None
        self._floor: Version = (major, 0, 0) if major else (0, 0, 0)

    # --- version awareness ----------------------------------------------------

    @property
    def major(self) -> int | None:
        """PocketID's major version, when given or learnt from an answer."""
        return self._major

    @property
    def version(self) -> Version | None:
        """The exact version, when the server announced it."""
        return self._version

    @property
    def version_text(self) -> str:
        """The version as far as it is known: 2.15.1, 2.x, or unknown."""
        if self._version is not None:
            return ".".join(str(part) for part in self._version)
        return f"{self._major}.x" if self._major else "unknown"

    @property
    def group_restricted_by_default(self) -> bool:
        """2.x restricts a client to its allowed groups; 1.x lets everyone in."""
        return (self._major or 0) >= 2

    def at_least(self, major: int, minor: int = 0) -> bool | None:
        """Whether PocketID is this version or newer; None when unknown."""
        wanted = (major, minor, 0)
        if self._version is not None:
            return self._version >= wanted
        if self._floor >= wanted:
            return True
        if self._major is not None and self._major != major:
            return self._major > major
        return None

    def detect_version(self) -> str:
        """Ask PocketID its version where it can tell, then refuse an
        unsupported one; returns the version as far as it is known."""
        if self._version is None:
            try:
                data = self._json("GET", "/api/version/current", check="version")
            except PocketIdError as exc:
                # The route is newer than 2.14: older versions answer 404 (or
                # their web page); a refused key or a full limit is an answer.
                if exc.status is None or exc.status in (401, 403, 429):
                    raise
                if exc.status >= 500:
                    raise
                data = None
            text = data.get("currentVersion") if isinstance(data, dict) else None
            parsed = parse_version(text) if isinstance(text, str) else None
            if parsed is not None:
                self._version = parsed
                self._major = parsed[0]
                self._floor = max(self._floor, parsed)
                logger.debug("PocketID at %s is %s", self.base_url, self.version_text)
        self.require_supported()
        return self.version_text

    def require_supported(self) -> None:
        """Raise when PocketID is a version whose API qfstack does not know."""
        if self._major is None or (
            self._major in SUPPORTED_MAJORS and self._major >= 1
        ):
            return
        newer = self._major > max(SUPPORTED_MAJORS)
        raise PocketIdError(
            "version",
            f"PocketID {self.version_text} is not supported: qfstack knows the "
            "API of PocketID 1.x and 2.x"
            + (", and a new major version changes it." if newer else "."),
            fix="use a qfstack release that supports this PocketID, or run "
            "PocketID 2.x (image tag v2)."
            if newer
            else "upgrade PocketID to 2.x (image tag v2), or at least 1.16.",
            permanent=True,
        )

    def _learn(self, data: Any) -> None:
        """Infer the version from fields only some versions send."""
        if not isinstance(data, dict):
            return
        if "code" in data and "request_id" in data and "error" in data:
            self._floor = max(self._floor, (2, 13, 0))
        if self._major is not None:
            return
        if "isGroupRestricted" in data or "request_id" in data:
            self._major = 2
            self._floor = max(self._floor, (2, 0, 0))
        elif "callbackURLs" in data and "isPublic" in data:
            self._major = 1
        if self._major is not None:
            logger.debug("PocketID at %s looks like %d.x", self.base_url, self._major)

    def learn_major_from_clients(self) -> int | None:
        """Read one OIDC client, of any name, for the fields that tell the
        major version; one call, made only while the version is unknown.
        None when PocketID has no client to tell it by."""
        if self._major is not None:
            return self._major
        query = {"pagination[page]": "1", "pagination[limit]": "1"}
        body = self._json("GET", "/api/oidc/clients", check="clients", params=query)
        items = body.get("data") if isinstance(body, dict) else None
        if isinstance(items, list) and items:
            self._learn(items[0])
        return self._major

    # --- calls ----------------------------------------------------------------

    def me(self) -> User:
        """The key's owner; raises when the key is invalid, expired or disabled."""
        data = self._json("GET", "/api/users/me", check="api key")
        return User.from_api(data)

    def require_admin(self) -> User:
        """The key's owner, who must be an admin (qfstack manages clients)."""
        user = self.me()
        if not user.is_admin:
            raise PocketIdError(
                "api key",
                f"the API key belongs to {user.username!r}, who is not an admin; "
                "clients and groups need an admin's key.",
                status=403,
                fix=ADMIN_HELP,
                permanent=True,
            )
        return user

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """The key owner's own API keys (never their secrets)."""
        return [
            ApiKeyInfo.from_api(item)
            for item in self._pages("/api/api-keys", {}, check="api key")
        ]

    def list_users(self, search: str | None = None) -> list[User]:
        """Every user an admin sees (all pages)."""
        params = {"search": search} if search else {}
        return [
            User.from_api(item)
            for item in self._pages("/api/users", params, check="users")
        ]

    def setup_first_admin(
        self, username: str, first_name: str, last_name: str = "", email: str = ""
    ) -> User:
        """Create the first user, an admin (`POST /api/signup/setup`, 1.5+).

        PocketID allows it only while no user exists; it answers with a
        session cookie, which is dropped: qfstack keeps using its key.
        """
        body = {"username": username, "firstName": first_name}
        if last_name:
            body["lastName"] = last_name
        if email:
            body["email"] = email
        try:
            data = self._json("POST", "/api/signup/setup", check="admin", body=body)
        finally:
            self.http.cookies.clear()
        return User.from_api(data)

    def get_client(self, client_id: str) -> OidcClient | None:
        """The OIDC client with this id, or None when there is none."""
        try:
            data = self._json("GET", f"/api/oidc/clients/{client_id}", check="client")
        except PocketIdError as exc:
            if exc.status == 404:
                return None
            raise
        return OidcClient.from_api(data)

    def list_clients(self, search: str | None = None) -> list[OidcClient]:
        """Every OIDC client (all pages)."""
        params = {"search": search} if search else {}
        items = list(self._pages("/api/oidc/clients", params, check="clients"))
        for item in items[:1]:
            self._learn(item)
        return [OidcClient.from_api(item) for item in items]

    def create_client(self, body: Mapping[str, Any]) -> OidcClient:
        """Create an OIDC client; `body` as `POST /api/oidc/clients` takes it."""
        data = self._json("POST", "/api/oidc/clients", check="client", body=body)
        return OidcClient.from_api(data)

    def update_client(self, client_id: str, body: Mapping[str, Any]) -> OidcClient:
        """Replace the client's settings (PUT sets every field it is sent)."""
        path = f"/api/oidc/clients/{client_id}"
        return OidcClient.from_api(self._json("PUT", path, check="client", body=body))

    def set_allowed_groups(
        self, client_id: str, group_ids: Sequence[str]
    ) -> OidcClient:
        """The user groups whose members may use the client."""
        path = f"/api/oidc/clients/{client_id}/allowed-user-groups"
        body = {"userGroupIds": list(group_ids)}
        return OidcClient.from_api(self._json("PUT", path, check="client", body=body))

    def client_secret_ids(self, client_id: str) -> list[str] | None:
        """The ids of a client's secrets (2.14+), or None where PocketID
        cannot list them (before 2.14 a client has one secret, never shown)."""
        if self.at_least(2, 14) is False:
            return None
        path = f"/api/oidc/clients/{client_id}/secrets"
        try:
            data = self._json("GET", path, check="client")
        except PocketIdError as exc:
            if exc.status != 404:
                raise
            # The route came with 2.14; the client itself was just read.
            return None
        self._floor = max(self._floor, (2, 14, 0))
        items = data if isinstance(data, list) else []
        return [str(item.get("id", "")) for item in items if isinstance(item, dict)]

    def list_groups(self, search: str | None = None) -> list[UserGroup]:
        """Every user group (all pages), with member counts."""
        params = {"search": search} if search else {}
        return [
            UserGroup.from_api(item)
            for item in self._pages("/api/user-groups", params, check="groups")
        ]

    def get_group(self, group_id: str) -> UserGroup:
        """One user group with its members' ids."""
        path = f"/api/user-groups/{group_id}"
        return UserGroup.from_api(self._json("GET", path, check="groups"))

    def create_group(self, name: str, friendly_name: str) -> UserGroup:
        """A new user group."""
        body = {"name": name, "friendlyName": friendly_name}
        data = self._json("POST", "/api/user-groups", check="groups", body=body)
        return UserGroup.from_api(data)

    def set_group_users(self, group_id: str, user_ids: Sequence[str]) -> UserGroup:
        """Replace the members of a user group."""
        path = f"/api/user-groups/{group_id}/users"
        body = {"userIds": list(user_ids)}
        return UserGroup.from_api(self._json("PUT", path, check="groups", body=body))

    # --- plumbing -------------------------------------------------------------

    def _pages(
        self, path: str, params: Mapping[str, str], *, check: str
    ) -> Iterator[Mapping[str, Any]]:
        """The items of a paginated list, page by page."""
        page = 1
        while page <= MAX_PAGES:
            query = {
                **params,
                "pagination[page]": str(page),
                "pagination[limit]": str(PAGE_LIMIT),
            }
            body = self._json("GET", path, check=check, params=query)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise PocketIdError(check, f"GET {path} answered without a data list.")
            yield from (item for item in data if isinstance(item, dict))
            pagination = body.get("pagination") or {}
            current = int(pagination.get("currentPage") or page)
            total = int(pagination.get("totalPages") or 1)
            # Past the end PocketID repeats the last page: stop there.
            if current >= total or current < page:
                return
            page = current + 1

    def _json(
        self,
        method: str,
        path: str,
        *,
        check: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        response = self._request(method, path, check=check, params=params, body=body)
        try:
            data = response.json()
        except ValueError:
            raise PocketIdError(
                check,
                f"{method} {path} answered {response.status_code} without JSON "
                f"({response.headers.get('content-type', 'no content type')}).",
                status=response.status_code,
                fix=f"check that {self.base_url} is PocketID itself, not a web page "
                "or a proxy in front of it.",
            ) from None
        self._learn(data)
        return data

    def _request(
        self,
        method: str,
        path: str,
        *,
        check: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        url = self.base_url + path
        headers = {"X-API-KEY": self.api_key.reveal(), "Accept": "application/json"}
        try:
            response = send(
                self.http,
                method,
                url,
                max_wait=self.max_wait,
                headers=headers,
                params=params,
                json=body,
            )
        except httpx.HTTPError as exc:
            verdict = connection_verdict(self.http, url, exc)
            raise PocketIdError(
                check,
                self.api_key.redact(verdict.summary),
                fix=verdict.fix,
                permanent=verdict.permanent,
            ) from None
        logger.debug("%s %s -> %d", method, path, response.status_code)
        if response.is_success:
            return response
        raise self._error(method, path, response, check)

    def _error_message(self, response: httpx.Response) -> str:
        """PocketID's `{"error": ...}`, or the start of the body."""
        try:
            data = response.json()
        except ValueError:
            data = None
        self._learn(data)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
        text = " ".join(response.text.split())
        return text[:120] or response.reason_phrase

    def _error(
        self, method: str, path: str, response: httpx.Response, check: str
    ) -> PocketIdError:
        status = response.status_code
        message = self.api_key.redact(self._error_message(response))
        if status == 401:
            return PocketIdError(
                "api key",
                "PocketID refused the API key (401): it is invalid or expired "
                "(PocketID answers the same for both).",
                status=status,
                fix=KEY_HELP.format(where=self.key_source),
                permanent=True,
            )
        if status == 403 and "disabled" in message.lower():
            return PocketIdError(
                "api key",
                "the API key's owner is disabled in PocketID.",
                status=status,
                fix="enable the user (Administration -> Users) or use another "
                "admin's key.",
                permanent=True,
            )
        if status == 403 and "permission" in message.lower():
            return PocketIdError(
                "api key",
                f"{method} {path} was refused (403: {message}); the key's owner "
                "is not an admin.",
                status=status,
                fix=ADMIN_HELP,
                permanent=True,
            )
        if status == 429:
            pause = retry_after(response)
            return PocketIdError(
                check,
                f"PocketID's rate limit answered 429 to {method} {path} "
                f"(Retry-After {pause:.0f}s).",
                status=status,
                fix="wait and run it again; PocketID allows 1 request/s per client "
                "address (burst 60), and something else on this address uses it.",
                retry_after=pause,
            )
        return PocketIdError(
            check,
            f"{method} {path} answered {status}: {message}",
            status=status,
            fix="see PocketID's log for the request."
            if status >= 500
            else "check the request against PocketID's API for this version.",
        )


def parse_version(text: str) -> Version | None:
    """`v2.14.0`, `2.14` or `2` as a (major, minor, patch) tuple."""
    match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?", text.strip())
    if match is None:
        return None
    major, minor, patch = (int(part or 0) for part in match.groups())
    return major, minor, patch


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time of PocketID's (UTC when it names no zone)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
