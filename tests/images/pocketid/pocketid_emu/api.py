"""The REST API under ``/api``: authentication, validation, records, errors.

Every call runs in one store transaction, so a request that fails changes
nothing. Routes that a version does not have are simply not registered: the
request then falls through to the 404 every unknown ``/api`` path gets.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from .keys import SigningKey
from .settings import Settings
from .store import (
    Record,
    State,
    Store,
    find_by,
    format_time,
    hash_token,
    new_api_key,
    new_group,
    new_id,
    new_token,
    new_user,
    now,
    parse_time,
    real_users,
)

SESSION_LIFETIME = timedelta(hours=1)
ONE_TIME_TOKEN_LIFETIME = timedelta(hours=1)
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_.@-]*[a-zA-Z0-9])?$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CLIENT_ID_PATTERN = re.compile(r"^[a-zA-Z0-9._-]+$")

NOT_SIGNED_IN = "You are not signed in"
NO_PERMISSION = "You don't have permission to perform this action"


@dataclass
class Request:
    """What a handler needs to know about one HTTP request."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    request_id: str
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class ApiError(Exception):
    """An error answer: HTTP status, PocketID's message, and its 2.13+ code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def error_body(
    settings: Settings, message: str, code: str, request_id: str
) -> dict[str, str]:
    body = {"error": message}
    if settings.at_least(2, 13):
        body.update(code=code, request_id=request_id)
    return body


def _unauthorised() -> ApiError:
    return ApiError(401, NOT_SIGNED_IN, "not_signed_in")


def _not_found() -> ApiError:
    return ApiError(404, "Record not found", "not_found")


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, "validation_failed")


@dataclass
class Call:
    """A request being handled: the request, the state and the caller."""

    request: Request
    state: State
    user: Record | None = None

    @property
    def caller(self) -> Record:
        """The authenticated user (only on routes that require one)."""
        if self.user is None:
            raise RuntimeError(f"{self.request.path} has no authenticated caller")
        return self.user


Handler = Callable[["Api", Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: str  # "none", "user" or "admin"
    api_key_allowed: bool = True


class Api:
    """Dispatches ``/api`` requests for one emulated PocketID version."""

    def __init__(self, settings: Settings, store: Store, key: SigningKey) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        self.routes = self._routes()

    def _routes(self) -> list[Route]:
        s = self.settings
        # 2.3+ wants a browser session, not an API key, to mint new API keys.
        keys_need_session = s.at_least(2, 3)
        table: list[tuple[str, str, Handler, str, bool]] = [
            ("GET", "/api/users/me", Api.get_me, "user", True),
            ("GET", "/api/users", Api.list_users, "admin", True),
            ("POST", "/api/users", Api.create_user, "admin", True),
            ("POST", "/api/users/{id}/one-time-access-token",
             Api.create_one_time_token, "admin", True),
            ("POST", "/api/signup/setup", Api.setup, "none", True),
            ("POST", "/api/one-time-access-token/{token}",
             Api.exchange_one_time_token, "none", True),
            ("GET", "/api/api-keys", Api.list_api_keys, "user", True),
            ("POST", "/api/api-keys", Api.create_api_key, "user",
             not keys_need_session),
            ("DELETE", "/api/api-keys/{id}", Api.revoke_api_key, "user", True),
            ("GET", "/api/oidc/clients", Api.list_clients, "admin", True),
            ("POST", "/api/oidc/clients", Api.create_client, "admin", True),
            ("GET", "/api/oidc/clients/{id}", Api.get_client, "admin", True),
            ("PUT", "/api/oidc/clients/{id}", Api.update_client, "admin", True),
            ("DELETE", "/api/oidc/clients/{id}", Api.delete_client, "admin", True),
            ("PUT", "/api/oidc/clients/{id}/allowed-user-groups",
             Api.set_allowed_groups, "admin", True),
            ("GET", "/api/user-groups", Api.list_groups, "admin", True),
            ("POST", "/api/user-groups", Api.create_group, "admin", True),
            ("GET", "/api/user-groups/{id}", Api.get_group, "admin", True),
            ("PUT", "/api/user-groups/{id}/users", Api.set_group_users, "admin", True),
        ]  # fmt: skip
        if s.at_least(2, 14):
            table += [
                ("GET", "/api/oidc/clients/{id}/secrets",
                 Api.list_client_secrets, "admin", True),
                ("POST", "/api/oidc/clients/{id}/secrets",
                 Api.add_client_secret, "admin", True),
                ("DELETE", "/api/oidc/clients/{id}/secrets/{secret}",
                 Api.delete_client_secret, "admin", True),
            ]  # fmt: skip
        else:
            table.append(
                ("POST", "/api/oidc/clients/{id}/secret",
                 Api.create_client_secret, "admin", True)
            )  # fmt: skip

        routes = []
        for method, template, handler, auth, api_key_allowed in table:
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            routes.append(
                Route(method, re.compile(f"^{regex}$"), handler, auth, api_key_allowed)
            )
        return routes

    def handle(self, request: Request) -> Response | None:
        """Answer an ``/api`` request, or None when no route matches."""
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match is None or route.method != request.method:
                continue
            request.params = match.groupdict()
            try:
                with self.store.transaction() as state:
                    call = Call(request, state)
                    if route.auth != "none":
                        call.user = self._authenticate(call, route)
                    return route.handler(self, call)
            except ApiError as error:
                body = error_body(
                    self.settings, error.message, error.code, request.request_id
                )
                return Response(error.status, body)
        return None

    # --- authentication -------------------------------------------------------

    def _authenticate(self, call: Call, route: Route) -> Record:
        """The caller's user record; raise the error PocketID would answer."""
        request, state = call.request, call.state
        user = self._session_user(request, state)
        via_api_key = False
        if user is None:
            api_key = request.header("X-API-Key")
            bearer = _bearer(request)
            if not api_key and bearer and bearer.count(".") != 2:
                api_key = bearer
            if api_key:
                user = self._api_key_user(state, api_key)
                via_api_key = user is not None
        if user is None:
            raise _unauthorised()

        if via_api_key and not route.api_key_allowed:
            raise ApiError(
                403,
                "API key authentication is not allowed for this endpoint",
                "api_key_auth_not_allowed",
            )
        if user.get("disabled"):
            raise ApiError(403, "User account is disabled", "user_disabled")
        if route.auth == "admin" and not user.get("isAdmin"):
            raise ApiError(403, NO_PERMISSION, "forbidden")
        return user

    def _session_user(self, request: Request, state: State) -> Record | None:
        token = _bearer(request)
        if not token or token.count(".") != 2:
            token = _session_cookie(request)
        if not token:
            return None
        claims = self.key.verify(token, audience=self.settings.app_url)
        if claims is None:
            return None
        user: Record | None = state["users"].get(claims.get("sub"))
        return user

    def _api_key_user(self, state: State, token: str) -> Record | None:
        static = self.settings.static_api_key
        if static and hmac.compare_digest(token.encode(), static.encode()):
            return find_by(state["users"], "hidden", True)

        record = find_by(state["apiKeys"], "tokenHash", hash_token(token))
        if record is None or parse_time(record["expiresAt"]) <= now():
            return None
        record["lastUsedAt"] = format_time(now())
        user: Record | None = state["users"].get(record["userId"])
        return user

    def session_cookie(self, user: Record) -> str:
        """A ``Set-Cookie`` value that signs ``user`` in, as after a passkey login."""
        issued = int(time.time())
        lifetime = int(SESSION_LIFETIME.total_seconds())
        token = self.key.sign(
            {
                "iss": self.settings.app_url,
                "sub": user["id"],
                "aud": [self.settings.app_url],
                "iat": issued,
                "exp": issued + lifetime,
                "isAdmin": bool(user.get("isAdmin")),
            }
        )
        secure = self.settings.app_url.startswith("https://")
        name = "__Host-access_token" if secure else "access_token"
        attributes = f"Path=/; Max-Age={lifetime}; HttpOnly; SameSite=Lax"
        return f"{name}={token}; {attributes}" + ("; Secure" if secure else "")

    # --- users ----------------------------------------------------------------

    def user_dto(self, state: State, user: Record) -> dict[str, Any]:
        groups = [
            _group_dto(group)
            for group in state["groups"].values()
            if user["id"] in group["userIds"]
        ]
        return {
            "id": user["id"],
            "username": user["username"],
            "email": user.get("email"),
            "firstName": user.get("firstName", ""),
            "lastName": user.get("lastName", ""),
            "displayName": user.get("displayName", ""),
            "isAdmin": bool(user.get("isAdmin")),
            "disabled": bool(user.get("disabled")),
            "locale": None,
            "customClaims": [],
            "userGroups": groups,
            "ldapId": None,
        }

    def get_me(self, call: Call) -> Response:
        return Response(200, self.user_dto(call.state, call.caller))

    def list_users(self, call: Call) -> Response:
        users = [self.user_dto(call.state, user) for user in real_users(call.state)]
        fields = ("username", "email", "firstName", "lastName")
        return Response(200, paginate(users, call.request, fields))

    def create_user(self, call: Call) -> Response:
        body = _json_object(call.request)
        user = self.validated_user(call.state, body)
        call.state["users"][user["id"]] = user
        return Response(201, self.user_dto(call.state, user))

    def validated_user(self, state: State, body: dict[str, Any]) -> Record:
        username = _string(body, "username")
        first_name = _string(body, "firstName")
        last_name = _string(body, "lastName")
        email = _string(body, "email") or None

        problems = []
        problems += _length("Username", username, 2, 50)
        if username and not USERNAME_PATTERN.match(username):
            problems.append(
                "Username must only contain letters, numbers, underscores, dots, "
                "hyphens, and '@' symbols and not start or end with a special "
                "character"
            )
        problems += _length("FirstName", first_name, 1, 50)
        problems += _length("LastName", last_name, 0, 50)
        if email is not None and not EMAIL_PATTERN.match(email):
            problems.append("Email must be a valid email address")
        if problems:
            raise _invalid(", ".join(problems))

        if find_by(state["users"], "username", username):
            raise ApiError(400, "Username is already in use", "already_in_use")
        if email and find_by(state["users"], "email", email):
            raise ApiError(400, "Email is already in use", "already_in_use")
        return new_user(
            username,
            email=email,
            first_name=first_name,
            last_name=last_name,
            is_admin=_boolean(body, "isAdmin"),
            disabled=_boolean(body, "disabled"),
        )

    def setup(self, call: Call) -> Response:
        if real_users(call.state):
            raise ApiError(400, "Setup already completed", "setup_already_completed")
        body = _json_object(call.request)
        body["isAdmin"] = True
        body["disabled"] = False
        user = self.validated_user(call.state, body)
        call.state["users"][user["id"]] = user
        response = Response(200, self.user_dto(call.state, user))
        response.headers.append(("Set-Cookie", self.session_cookie(user)))
        return response

    # --- one-time access tokens -------------------------------------------------

    def create_one_time_token(self, call: Call) -> Response:
        user = call.state["users"].get(call.request.params["id"])
        if user is None or user.get("hidden"):
            raise _not_found()
        token = issue_one_time_token(call.state, user)
        return Response(201, {"token": token})

    def exchange_one_time_token(self, call: Call) -> Response:
        user = redeem_one_time_token(call.state, call.request.params["token"])
        if user is None:
            raise ApiError(
                400, "Token is invalid or expired", "token_invalid_or_expired"
            )
        response = Response(200, self.user_dto(call.state, user))
        response.headers.append(("Set-Cookie", self.session_cookie(user)))
        return response

    # --- API keys ---------------------------------------------------------------

    def list_api_keys(self, call: Call) -> Response:
        owner = call.caller["id"]
        keys = [
            _api_key_dto(record)
            for record in call.state["apiKeys"].values()
            if record["userId"] == owner
        ]
        return Response(200, paginate(keys, call.request, ("name",)))

    def create_api_key(self, call: Call) -> Response:
        body = _json_object(call.request)
        name = _string(body, "name")
        description = _string(body, "description")
        problems = _length("Name", name, 3, 50)
        expires_text = _string(body, "expiresAt")
        if not expires_text:
            problems.append("ExpiresAt is required")
        if problems:
            raise _invalid(", ".join(problems))
        try:
            expires_at = parse_time(expires_text)
        except ValueError:
            raise ApiError(
                400, "Invalid request body", "invalid_request_body"
            ) from None
        if expires_at <= now():
            raise ApiError(
                400,
                "Expiration date must be in the future",
                "invalid_api_key_expiration",
            )

        token = new_token()
        record = new_api_key(
            call.caller["id"],
            token,
            name=name,
            description=description,
            expires_at=expires_at,
        )
        call.state["apiKeys"][record["id"]] = record
        return Response(201, {"apiKey": _api_key_dto(record), "token": token})

    def revoke_api_key(self, call: Call) -> Response:
        record = call.state["apiKeys"].get(call.request.params["id"])
        if record is None or record["userId"] != call.caller["id"]:
            raise ApiError(404, "API key not found", "api_key_not_found")
        del call.state["apiKeys"][record["id"]]
        return Response(204)

    # --- OIDC clients -----------------------------------------------------------

    def client_dto(
        self, state: State, client: Record, *, with_count: bool = False
    ) -> dict[str, Any]:
        groups = [
            _group_dto(state["groups"][group_id], state)
            for group_id in client.get("allowedUserGroupIds", [])
            if group_id in state["groups"]
        ]
        dto: dict[str, Any] = {
            "id": client["id"],
            "name": client["name"],
            "hasLogo": False,
            "launchURL": client.get("launchURL"),
            "requiresReauthentication": client.get("requiresReauthentication", False),
            "callbackURLs": client.get("callbackURLs", []),
            "logoutCallbackURLs": client.get("logoutCallbackURLs", []),
            "isPublic": client.get("isPublic", False),
            "pkceEnabled": client.get("pkceEnabled", False),
            "credentials": client.get("credentials", {}),
            "allowedUserGroups": groups,
        }
        if self.settings.at_least(2):
            dto["hasDarkLogo"] = False
            dto["description"] = client.get("description", "")
            dto["isGroupRestricted"] = client.get("isGroupRestricted", True)
            dto["skipConsent"] = client.get("skipConsent", False)
        if with_count:
            dto["allowedUserGroupsCount"] = len(groups)
        return dto

    def validated_client(self, body: dict[str, Any]) -> Record:
        """Client fields from a create/update body; missing fields get defaults."""
        name = _string(body, "name")
        problems = _length("Name", name, 1, 50)
        callbacks = _string_list(body, "callbackURLs")
        logout_callbacks = _string_list(body, "logoutCallbackURLs")
        for label, urls in (
            ("CallbackURLs", callbacks),
            ("LogoutCallbackURLs", logout_callbacks),
        ):
            for index, url in enumerate(urls):
                if not _is_callback_url(url):
                    problems.append(f"{label}[{index}] is invalid")
        launch_url = _string(body, "launchURL") or None
        if launch_url is not None and not _is_web_url(launch_url):
            problems.append("LaunchURL must be a valid URL")
        if problems:
            raise _invalid(", ".join(problems))

        credentials = body.get("credentials") or {}
        if not isinstance(credentials, dict):
            raise ApiError(400, "Invalid request body", "invalid_request_body")
        is_public = _boolean(body, "isPublic")
        client: Record = {
            "name": name,
            "callbackURLs": callbacks,
            "logoutCallbackURLs": logout_callbacks,
            "isPublic": is_public,
            # A public client cannot keep a secret, so PKCE is what protects it.
            "pkceEnabled": is_public or _boolean(body, "pkceEnabled"),
            "requiresReauthentication": _boolean(body, "requiresReauthentication"),
            "launchURL": launch_url,
            "credentials": credentials,
        }
        # 1.x binds JSON into a struct without these fields: they are dropped.
        if self.settings.at_least(2):
            client["description"] = _string(body, "description")
            client["isGroupRestricted"] = _boolean(
                body, "isGroupRestricted", default=True
            )
            client["skipConsent"] = _boolean(body, "skipConsent")
        return client

    def _client(self, call: Call) -> Record:
        client: Record | None = call.state["clients"].get(call.request.params["id"])
        if client is None:
            raise _not_found()
        return client

    def list_clients(self, call: Call) -> Response:
        clients = [
            self.client_dto(call.state, client, with_count=True)
            for client in call.state["clients"].values()
        ]
        return Response(200, paginate(clients, call.request, ("name",)))

    def create_client(self, call: Call) -> Response:
        body = _json_object(call.request)
        client = self.validated_client(body)
        client_id = _string(body, "id")
        if client_id:
            problems = _length("ID", client_id, 2, 128)
            if not CLIENT_ID_PATTERN.match(client_id):
                problems.append("ID is invalid")
            if problems:
                raise _invalid(", ".join(problems))
            if client_id in call.state["clients"]:
                raise ApiError(
                    400, "Client ID already in use", "client_id_already_exists"
                )
        client.update(
            id=client_id or new_id(),
            allowedUserGroupIds=[],
            secrets=[],
            createdAt=format_time(now()),
        )
        call.state["clients"][client["id"]] = client
        return Response(201, self.client_dto(call.state, client))

    def get_client(self, call: Call) -> Response:
        return Response(200, self.client_dto(call.state, self._client(call)))

    def update_client(self, call: Call) -> Response:
        client = self._client(call)
        replacement = self.validated_client(_json_object(call.request))
        kept = ("id", "allowedUserGroupIds", "secrets", "createdAt")
        replacement.update({name: client[name] for name in kept if name in client})
        call.state["clients"][client["id"]] = replacement
        return Response(200, self.client_dto(call.state, replacement))

    def delete_client(self, call: Call) -> Response:
        client = self._client(call)
        del call.state["clients"][client["id"]]
        return Response(204)

    def set_allowed_groups(self, call: Call) -> Response:
        client = self._client(call)
        body = _json_object(call.request)
        if "userGroupIds" not in body:
            raise _invalid("UserGroupIDs is required")
        group_ids = _string_list(body, "userGroupIds")
        if any(group_id not in call.state["groups"] for group_id in group_ids):
            raise _not_found()
        client["allowedUserGroupIds"] = list(dict.fromkeys(group_ids))
        return Response(200, self.client_dto(call.state, client))

    def create_client_secret(self, call: Call) -> Response:
        """Before 2.14 a client has one secret; making a new one replaces it."""
        client = self._client(call)
        secret = new_token()
        client["secrets"] = [secret_record(secret)]
        return Response(200, {"secret": secret})

    def list_client_secrets(self, call: Call) -> Response:
        client = self._client(call)
        return Response(200, [_secret_dto(record) for record in client["secrets"]])

    def add_client_secret(self, call: Call) -> Response:
        client = self._client(call)
        secret = new_token()
        record = secret_record(secret)
        client["secrets"].append(record)
        return Response(201, {**_secret_dto(record), "secret": secret})

    def delete_client_secret(self, call: Call) -> Response:
        client = self._client(call)
        wanted = call.request.params["secret"]
        remaining = [record for record in client["secrets"] if record["id"] != wanted]
        if len(remaining) == len(client["secrets"]):
            raise _not_found()
        client["secrets"] = remaining
        return Response(204)

    # --- user groups ------------------------------------------------------------

    def _group(self, call: Call) -> Record:
        group: Record | None = call.state["groups"].get(call.request.params["id"])
        if group is None:
            raise _not_found()
        return group

    def _group_with_users(self, state: State, group: Record) -> dict[str, Any]:
        users = [
            self.user_dto(state, state["users"][user_id])
            for user_id in group["userIds"]
            if user_id in state["users"]
        ]
        dto = _group_dto(group)
        dto["users"] = users
        return dto

    def list_groups(self, call: Call) -> Response:
        groups = [
            _group_dto(group, call.state) for group in call.state["groups"].values()
        ]
        return Response(200, paginate(groups, call.request, ("name", "friendlyName")))

    def create_group(self, call: Call) -> Response:
        body = _json_object(call.request)
        name = _string(body, "name")
        friendly_name = _string(body, "friendlyName")
        problems = _length("FriendlyName", friendly_name, 2, 50)
        problems += _length("Name", name, 2, 255)
        if problems:
            raise _invalid(", ".join(problems))
        if find_by(call.state["groups"], "name", name):
            raise ApiError(400, "Group name is already in use", "already_in_use")
        group = new_group(name, friendly_name)
        call.state["groups"][group["id"]] = group
        return Response(201, self._group_with_users(call.state, group))

    def get_group(self, call: Call) -> Response:
        return Response(200, self._group_with_users(call.state, self._group(call)))

    def set_group_users(self, call: Call) -> Response:
        group = self._group(call)
        body = _json_object(call.request)
        if "userIds" not in body:
            raise _invalid("UserIDs is required")
        user_ids = _string_list(body, "userIds")
        if any(user_id not in call.state["users"] for user_id in user_ids):
            raise _not_found()
        group["userIds"] = list(dict.fromkeys(user_ids))
        return Response(200, self._group_with_users(call.state, group))


def issue_one_time_token(state: State, user: Record) -> str:
    """Store a one-hour sign-in token for ``user`` and return it."""
    token = new_token(16)
    state["oneTimeTokens"][hash_token(token)] = {
        "userId": user["id"],
        "expiresAt": format_time(now() + ONE_TIME_TOKEN_LIFETIME),
    }
    return token


def redeem_one_time_token(state: State, token: str) -> Record | None:
    """Use up a one-time token; the user it signs in, or None."""
    record = state["oneTimeTokens"].pop(hash_token(token), None)
    if record is None or parse_time(record["expiresAt"]) <= now():
        return None
    user: Record | None = state["users"].get(record["userId"])
    return user


def paginate(
    items: list[dict[str, Any]], request: Request, search_fields: tuple[str, ...]
) -> dict[str, Any]:
    """PocketID's list answer: search, sort, then one page (the last if past it)."""
    search = (request.query_value("search") or "").lower()
    if search:
        items = [
            item
            for item in items
            if any(
                search in str(item.get(name) or "").lower() for name in search_fields
            )
        ]

    column = request.query_value("sort[column]")
    if column and all(column in item for item in items):
        descending = (request.query_value("sort[direction]") or "").lower() == "desc"
        items = sorted(items, key=lambda item: str(item[column]), reverse=descending)

    page = _query_int(request, "pagination[page]", 1)
    limit = min(_query_int(request, "pagination[limit]", 20), 100)
    total_pages = max(1, math.ceil(len(items) / limit))
    page = min(page, total_pages)
    return {
        "data": items[(page - 1) * limit : page * limit],
        "pagination": {
            "totalPages": total_pages,
            "totalItems": len(items),
            "currentPage": page,
            "itemsPerPage": limit,
        },
    }


def _query_int(request: Request, name: str, default: int) -> int:
    value = request.query_value(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(
            400, f"Invalid value for {name}", "invalid_request_body"
        ) from None
    return max(number, 1)


def _bearer(request: Request) -> str | None:
    authorization = request.header("Authorization") or ""
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip() or None
    return None


def _session_cookie(request: Request) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(request.header("Cookie") or "")
    except CookieError:
        return None
    for name in ("__Host-access_token", "access_token"):
        if name in cookie:
            return cookie[name].value
    return None


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request body", "invalid_request_body")
    return body


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "Invalid request body", "invalid_request_body")
    return value


def _boolean(body: dict[str, Any], name: str, *, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, "Invalid request body", "invalid_request_body")
    return value


def _string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "Invalid request body", "invalid_request_body")
    return value


def _length(label: str, value: str, minimum: int, maximum: int) -> list[str]:
    """The validator's messages for a string's length ("required" when empty)."""
    if minimum > 0 and not value:
        return [f"{label} is required"]
    if len(value) < minimum:
        return [f"{label} must be at least {minimum} characters long"]
    if len(value) > maximum:
        return [f"{label} must be at most {maximum} characters long"]
    return []


def _is_callback_url(url: str) -> bool:
    """Absolute URL with a scheme; custom schemes and ``*`` wildcards allowed."""
    parts = urlsplit(url)
    return bool(parts.scheme) and " " not in url and bool(parts.netloc or parts.path)


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _api_key_dto(record: Record) -> dict[str, Any]:
    return {
        name: record[name]
        for name in (
            "id",
            "name",
            "description",
            "expiresAt",
            "lastUsedAt",
            "createdAt",
        )
    }


def _group_dto(group: Record, state: State | None = None) -> dict[str, Any]:
    dto: dict[str, Any] = {
        "id": group["id"],
        "friendlyName": group["friendlyName"],
        "name": group["name"],
        "customClaims": [],
        "ldapId": None,
        "createdAt": group["createdAt"],
    }
    if state is not None:
        dto["userCount"] = sum(
            1 for user_id in group["userIds"] if user_id in state["users"]
        )
    return dto


def secret_record(secret: str) -> Record:
    return {
        "id": new_id(),
        "hash": hash_token(secret),
        "createdAt": format_time(now()),
        "lastUsedAt": None,
    }


def _secret_dto(record: Record) -> dict[str, Any]:
    return {name: record[name] for name in ("id", "createdAt", "lastUsedAt")}
