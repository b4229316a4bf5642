"""The asyncio client: one method per route, retries, idempotency keys and shared pacing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any, Generic, Literal, Self, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, TypeAdapter

from compere import __version__
from compere.client.errors import TransportError, error_from_response
from compere.client.ratelimit import RateLimitGate
from compere.client.retry import RetryPolicy, parse_retry_after
from compere.domain.strategies import Strategy
from compere.http.schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyScope,
    AttributeCount,
    BatchResult,
    CategoryCount,
    Comparison,
    ComparisonBatch,
    ComparisonCreate,
    ContentPair,
    ControlledBoard,
    Entity,
    EntityCreate,
    EntityUpdate,
    Health,
    ImportResult,
    Member,
    MemberSet,
    Message,
    Pair,
    PasswordChange,
    PasswordChanged,
    Progress,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    ProjectUpdated,
    RankedEntity,
    Readiness,
    Token,
    User,
    UserCreate,
    VoteImportResult,
    VotersReport,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookEvent,
    WebhookUpdate,
)

__all__ = ["AsyncClient", "Page"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Logged = TypeVar("Logged", Comparison, WebhookDelivery)

ExportFormat = Literal["jsonl", "csv"]
PreferenceFormat = Literal["dpo", "arena"]
DeliveryStatus = Literal["pending", "delivered", "failed"]

_ENTITIES = TypeAdapter(list[Entity])
_RANKED = TypeAdapter(list[RankedEntity])
_CATEGORIES = TypeAdapter(list[CategoryCount])
_ATTRIBUTES = TypeAdapter(list[AttributeCount])
_COMPARISONS = TypeAdapter(list[Comparison])
_USERS = TypeAdapter(list[User])
_API_KEYS = TypeAdapter(list[ApiKey])
_WEBHOOKS = TypeAdapter(list[Webhook])
_DELIVERIES = TypeAdapter(list[WebhookDelivery])
_PROJECTS = TypeAdapter(list[ProjectOut])
_MEMBERS = TypeAdapter(list[Member])
# Partial updates (and project creation, whose unset settings follow the server's):
# only the fields the caller gave are sent.
_PARTIAL = (EntityUpdate, WebhookUpdate, ProjectCreate, ProjectUpdate)
# The board routes, which act on ``default`` at the top level and on a project under
# /projects/{slug}/ (``AsyncClient(project=...)``).
_BOARD_PATHS = (
    "/entities",
    "/comparisons",
    "/dissimilar_entities",
    "/mab/",
    "/ratings",
    "/export/",
    "/voters",
    "/webhooks",
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, with the server's ``X-Total-Count`` when it sends one."""

    items: list[T]
    total: int | None


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _entity_id(value: int | Entity) -> int:
    return value.id if isinstance(value, Entity) else value


async def _file_body(
    source: bytes | str | PathLike[str] | Iterable[Mapping[str, Any]], format: str | None
) -> tuple[bytes, str]:
    """An import's body and format: the bytes given, a file's bytes (format from its
    suffix unless given), or records as JSON Lines."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), format or "jsonl"
    if isinstance(source, str | PathLike):
        path = Path(source)
        data = await asyncio.to_thread(path.read_bytes)
        return data, format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    return b"".join(orjson.dumps(dict(record)) + b"\n" for record in source), format or "jsonl"


class AsyncClient:
    """An asyncio client for a Compere server.

    Use it as an async context manager (or call :meth:`close`)::

        async with AsyncClient("http://127.0.0.1:8090") as compere:
            pair = await compere.next_pair()
            await compere.vote_on(pair, winner=pair.entity1)

    One client is meant to be shared by every task of a program: its connector holds at
    most ``concurrency`` connections, and its :class:`~compere.client.ratelimit.RateLimitGate`
    paces all of them against the server's rate limit together.

    Every write (POST, PUT, PATCH, DELETE) carries an ``Idempotency-Key`` (a new UUID unless the
    caller passes ``idempotency_key``), the same on every retry, so a retried vote is
    stored once. Answers 503, connection errors and timeouts are retried per ``retry``;
    429 waits as the server asks. Other errors raise the matching
    :class:`~compere.client.errors.CompereError` subclass at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        concurrency: int = 100,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=timeout)
        self._headers = {"User-Agent": f"compere-client/{__version__}", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self.rate_limit = RateLimitGate()
        # The project the board methods (entities, votes, pairs, ratings, exports) act on;
        # None: the top-level routes, i.e. the server's project ``default``.
        self.project = project

    def _in_project(self, path: str) -> str:
        if self.project is None or not path.startswith(_BOARD_PATHS):
            return path
        return f"/projects/{self.project}{path}"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers
            )
        return self._session

    # --- the request loop ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        replay_safe: bool = True,
        accept: frozenset[int] = frozenset(),
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A successful response (or one whose status is in ``accept``), after the retries
        the policy allows.

        ``replay_safe=False`` (a write the server cannot deduplicate) retries only failures
        that prove the request never reached the server: a refused connection or a 429.
        """
        url = self.base_url + self._in_project(path)
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        if method in WRITE_METHODS:
            headers[IDEMPOTENCY_HEADER] = idempotency_key or str(uuid.uuid4())
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        failures = 0
        refusals = 0
        session = self._open_session()
        while True:
            delay: float
            async with self._slots:
                permit = await self.rate_limit.acquire(route)
                try:
                    response = await session.request(method, url, params=query, data=body, headers=headers)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.rate_limit.release(permit, None)
                    failures += 1
                    never_sent = isinstance(exc, aiohttp.ClientConnectorError)
                    if failures >= self.retry.attempts or not (replay_safe or never_sent):
                        raise TransportError(
                            f"{type(exc).__name__}: {exc}".rstrip(": "), method=method, url=url
                        ) from exc
                    delay = self.retry.backoff(failures)
                except BaseException:
                    self.rate_limit.release(permit, None)
                    raise
                else:
                    self.rate_limit.release(permit, response.status, response.headers)
                    if response.status < 400 or response.status in accept:
                        try:
                            yield response
                        finally:
                            response.release()
                        return
                    error_body = await response.read()
                    response.release()
                    error = error_from_response(
                        response.status, error_body, response.headers, method=method, url=url
                    )
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if (
                        response.status == 429
                        and refusals < self.retry.rate_limit_waits
                        and (retry_after or 0.0) <= self.retry.max_wait
                    ):
                        refusals += 1
                        delay = retry_after if retry_after is not None else self.retry.backoff(refusals)
                    elif self._retryable(response.status, retry_after, headers, replay_safe):
                        failures += 1
                        if failures >= self.retry.attempts:
                            raise error
                        delay = self.retry.backoff(failures, retry_after)
                    else:
                        raise error
            await asyncio.sleep(delay)

    @staticmethod
    def _retryable(
        status: int, retry_after: float | None, headers: Mapping[str, str], replay_safe: bool
    ) -> bool:
        if status == 503:
            return replay_safe
        # The server's answer to a key whose first request is still running (or whose
        # server died mid-request, until the key's lock expires): ask again later.
        return status == 409 and retry_after is not None and IDEMPOTENCY_HEADER in headers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: Mapping[str, Any] | None = None,
        json: BaseModel | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        replay_safe: bool = True,
    ) -> _Answer:
        body = None
        if isinstance(json, BaseModel):
            body = json.model_dump_json(exclude_unset=isinstance(json, _PARTIAL)).encode()
        elif json is not None:
            body = orjson.dumps(json)
        async with self._response(
            method,
            path,
            route=route,
            params=params,
            body=body,
            content_type="application/json" if body is not None else None,
            idempotency_key=idempotency_key,
            replay_safe=replay_safe,
        ) as response:
            return _Answer(response.status, response.headers, await response.read())

    async def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        answer = await self._call(method, path, **kwargs)
        return model.model_validate_json(answer.body)

    async def _page(self, adapter: TypeAdapter[list[T]], path: str, route: str, **params: Any) -> Page[T]:
        answer = await self._call("GET", path, route=route, params=params)
        total = answer.headers.get("X-Total-Count")
        return Page(adapter.validate_json(answer.body), int(total) if total is not None else None)

    async def _pages(
        self, adapter: TypeAdapter[list[T]], path: str, route: str, page_size: int, **params: Any
    ) -> AsyncIterator[T]:
        skip = 0
        while True:
            page = await self._page(adapter, path, route, skip=skip, limit=page_size, **params)
            for item in page.items:
                yield item
            if len(page.items) < page_size:
                return
            skip += len(page.items)

    @staticmethod
    async def _once_each(log: AsyncIterator[Logged]) -> AsyncIterator[Logged]:
        """A newest-first log read in pages, each entry once: entries logged meanwhile push
        older ones down, which then reappear at the top of the next page; ids only fall."""
        below: int | None = None
        async for entry in log:
            if below is None or entry.id < below:
                below = entry.id
                yield entry

    async def _download(
        self, path: str, route: str, params: Mapping[str, Any], *, by_line: bool
    ) -> AsyncIterator[bytes]:
        """A streamed download read as it arrives (bounded memory): line by line, or in chunks."""
        async with self._response("GET", path, route=route, params=params) as response:
            pieces: AsyncIterable[bytes] = (
                response.content if by_line else response.content.iter_chunked(64 * 1024)
            )
            try:
                async for piece in pieces:
                    yield piece
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Part of the stream was consumed already: a silent restart would repeat it.
                raise TransportError(
                    f"download cut short: {type(exc).__name__}", method="GET", url=str(response.url)
                ) from exc

    async def _records(
        self, path: str, route: str, params: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The JSON Lines records of a streamed download, parsed one line at a time."""
        async for line in self._download(path, route, params, by_line=True):
            if line.strip():
                yield orjson.loads(line)

    @staticmethod
    async def _save(path: str | PathLike[str], chunks: AsyncIterator[bytes]) -> int:
        """Write a download to ``path`` under a temporary name, renamed when complete, so an
        interrupted download never leaves a file that looks whole; returns the bytes written."""
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        written = 0
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
        return written

    # --- health -------------------------------------------------------------------------

    async def health(self) -> Health:
        """``GET /health``: liveness."""
        return await self._model(Health, "GET", "/health", route="GET /health")

    async def ready(self) -> Readiness:
        """``GET /health/ready``: the readiness of each dependency, also when not ready (503)."""
        async with self._response(
            "GET", "/health/ready", route="GET /health/ready", accept=frozenset({503})
        ) as response:
            return Readiness.model_validate_json(await response.read())

    # --- authentication -----------------------------------------------------------------

    async def login(self, username: str, password: str) -> Token:
        """``POST /auth/token``; the token is kept and sent with every later request."""
        body = orjson.dumps({"username": username, "password": password, "grant_type": "password"})
        async with self._response(
            "POST", "/auth/token", route="POST /auth/token", body=body, content_type="application/json"
        ) as response:
            token = Token.model_validate_json(await response.read())
        self.token = token.access_token
        return token

    async def logout(self) -> Message:
        """``POST /auth/logout``: the current token stops working everywhere."""
        message = await self._model(Message, "POST", "/auth/logout", route="POST /auth/logout")
        self.token = None
        return message

    async def logout_all(self) -> Message:
        """``POST /auth/logout-all``: every token of the account stops working, this one included."""
        message = await self._model(Message, "POST", "/auth/logout-all", route="POST /auth/logout-all")
        self.token = None
        return message

    async def change_password(self, current_password: str, new_password: str) -> PasswordChanged:
        """``POST /auth/users/me/password``: every older token of the account ends; the new
        token in the answer is kept and sent with every later request.

        Not retried after a failure that may have reached the server: once the password has
        changed, a second try would be refused (its token has ended).
        """
        body = PasswordChange(current_password=current_password, new_password=new_password)
        changed = await self._model(
            PasswordChanged,
            "POST",
            "/auth/users/me/password",
            route="POST /auth/users/me/password",
            json=body,
            replay_safe=False,
        )
        self.token = changed.access_token
        return changed

    async def me(self) -> User:
        """``GET /auth/users/me``: the account of the current token."""
        return await self._model(User, "GET", "/auth/users/me", route="GET /auth/users/me")

    async def create_user(
        self,
        username: str,
        password: str,
        *,
        email: str | None = None,
        full_name: str | None = None,
        is_superuser: bool = False,
        idempotency_key: str | None = None,
    ) -> User:
        """``POST /auth/users/``: the first user ever becomes a superuser; then superusers only."""
        body = UserCreate(
            username=username, password=password, email=email, full_name=full_name, is_superuser=is_superuser
        )
        return await self._model(
            User,
            "POST",
            "/auth/users/",
            route="POST /auth/users/",
            json=body,
            idempotency_key=idempotency_key,
        )

    async def list_users(self, *, skip: int = 0, limit: int = 100) -> list[User]:
        """``GET /auth/users/`` (superusers)."""
        page = await self._page(_USERS, "/auth/users/", "GET /auth/users/", skip=skip, limit=limit)
        return page.items

    def iter_users(self, *, page_size: int = 100) -> AsyncIterator[User]:
        """Every user, page by page as the iteration reaches it (superusers)."""
        return self._pages(_USERS, "/auth/users/", "GET /auth/users/", page_size)

    async def disable_user(self, user_id: int) -> User:
        """``POST /auth/users/{id}/disable``: their tokens stop working at once (superusers)."""
        path = f"/auth/users/{int(user_id)}/disable"
        return await self._model(User, "POST", path, route="POST /auth/users/{user_id}/disable")

    async def enable_user(self, user_id: int) -> User:
        """``POST /auth/users/{id}/enable`` (superusers)."""
        path = f"/auth/users/{int(user_id)}/enable"
        return await self._model(User, "POST", path, route="POST /auth/users/{user_id}/enable")

    # --- API keys -----------------------------------------------------------------------

    async def create_api_key(
        self,
        scopes: Iterable[ApiKeyScope],
        *,
        name: str = "",
        project_id: int | None = None,
        expires_at: datetime | None = None,
        rate_limit: int | None = None,
        rate_window: int | None = None,
    ) -> ApiKeyCreated:
        """``POST /auth/api-keys``: a key for scripts (pass it as ``token=`` to a client).

        The answer carries the ``key``, shown this once. Not deduplicated by the server (it
        would have to keep the key with the answer), so retried only when the request
        cannot have reached the server.
        """
        body = ApiKeyCreate(
            name=name,
            scopes=list(scopes),
            project_id=project_id,
            expires_at=expires_at,
            rate_limit=rate_limit,
            rate_window=rate_window,
        )
        return await self._model(
            ApiKeyCreated, "POST", "/auth/api-keys", route="POST /auth/api-keys", json=body, replay_safe=False
        )

    async def list_api_keys(self) -> list[ApiKey]:
        """``GET /auth/api-keys``: your keys, by prefix (never the keys themselves)."""
        page = await self._page(_API_KEYS, "/auth/api-keys", "GET /auth/api-keys")
        return page.items

    async def revoke_api_key(self, key_id: int) -> Message:
        """``DELETE /auth/api-keys/{id}``: the key stops working at once, everywhere."""
        path = f"/auth/api-keys/{int(key_id)}"
        return await self._model(Message, "DELETE", path, route="DELETE /auth/api-keys/{key_id}")

    # --- entities -----------------------------------------------------------------------

    async def create_entity(
        self,
        name: str,
        *,
        description: str = "",
        image_urls: Iterable[str] = (),
        external_id: str | None = None,
        prompt: str | None = None,
        attributes: Mapping[str, float] | None = None,
        idempotency_key: str | None = None,
    ) -> Entity:
        """``POST /entities/``; 409 (:class:`Conflict`) when ``external_id`` is taken.

        ``prompt`` is the prompt this entity answers (preference exports pair responses to
        the same prompt); ``attributes`` are named numbers a fitted board can control for
        (``/ratings?control=``).
        """
        body = EntityCreate(
            name=name,
            description=description,
            image_urls=list(image_urls),
            external_id=external_id,
            prompt=prompt,
            attributes=dict(attributes or {}),
        )
        return await self._model(
            Entity, "POST", "/entities/", route="POST /entities/", json=body, idempotency_key=idempotency_key
        )

    async def get_entity(self, entity_id: int) -> Entity:
        """``GET /entities/{id}``; :class:`NotFound` when it does not exist or was deleted."""
        return await self._model(Entity, "GET", f"/entities/{int(entity_id)}", route="GET /entities/{id}")

    async def update_entity(self, entity_id: int, **changes: Any) -> Entity:
        """``PUT /entities/{id}`` with only the given fields (``name``, ``description``,
        ``image_urls``, ``prompt``, ``attributes``)."""
        body = EntityUpdate(**changes)
        path = f"/entities/{int(entity_id)}"
        return await self._model(Entity, "PUT", path, route="PUT /entities/{id}", json=body)

    async def delete_entity(self, entity_id: int) -> Message:
        """``DELETE /entities/{id}`` (superusers when authentication is on)."""
        path = f"/entities/{int(entity_id)}"
        return await self._model(Message, "DELETE", path, route="DELETE /entities/{id}")

    async def list_entities(
        self, *, skip: int = 0, limit: int = 100, search: str | None = None
    ) -> Page[Entity]:
        """``GET /entities/``: one page, best rated first, with the matching total."""
        return await self._page(
            _ENTITIES, "/entities/", "GET /entities/", skip=skip, limit=limit, search=search
        )

    def iter_entities(self, *, search: str | None = None, page_size: int = 100) -> AsyncIterator[Entity]:
        """Every (matching) entity, fetched a page at a time as the iteration reaches it.

        The listing is ordered by rating, so votes cast while iterating can move an entity
        across a page boundary (seen twice or not at all); iterate a quiet board for a census.
        """
        return self._pages(_ENTITIES, "/entities/", "GET /entities/", page_size, search=search)

    async def import_entities(
        self,
        source: bytes | str | PathLike[str] | Iterable[Mapping[str, Any]],
        *,
        format: Literal["jsonl", "csv"] | None = None,
    ) -> ImportResult:
        """``POST /entities/import`` (superusers): a CSV or JSON Lines file, or records.

        ``source`` is the file's bytes, a path (``format`` from its suffix unless given), or an
        iterable of records (sent as JSON Lines). Records match on ``external_id``, so records
        that carry one are never imported twice. The import is not retried after a failure
        that may have reached the server: records without ``external_id`` could be doubled.
        """
        data, fmt = await _file_body(source, format)
        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        async with self._response(
            "POST",
            "/entities/import",
            route="POST /entities/import",
            params={"format": fmt},
            body=data,
            content_type=media,
            replay_safe=False,
        ) as response:
            return ImportResult.model_validate_json(await response.read())

    async def import_comparisons(
        self,
        source: bytes | str | PathLike[str] | Iterable[Mapping[str, Any]],
        *,
        format: Literal["jsonl", "csv"] | None = None,
        on_error: Literal["skip", "stop"] = "skip",
        max_rejected: int = 100,
        name: str | None = None,
    ) -> VoteImportResult:
        """``POST /comparisons/import`` (superusers): a vote log, a comparisons export or
        arena battles (``model_a``, ``model_b``, ``winner``, optional ``judge``, ``tstamp``).

        ``source`` is the file's bytes, a path (read into memory; ``format`` from its
        suffix unless given), or an iterable of records (sent as JSON Lines). The server
        keeps the file's progress under ``name`` (default: a digest of its first record),
        so sending the same file again after a failure stores only what is missing; that
        makes a retry safe, and the result's ``complete`` says whether it is needed.
        """
        data, fmt = await _file_body(source, format)
        params: dict[str, Any] = {"format": fmt, "on_error": on_error, "max_rejected": max_rejected}
        if name is not None:
            params["source"] = name
        # The server stores nothing twice (it keeps the file's progress), so a retry is safe.
        async with self._response(
            "POST",
            "/comparisons/import",
            route="POST /comparisons/import",
            params=params,
            body=data,
            content_type="text/csv" if fmt == "csv" else "application/x-ndjson",
        ) as response:
            return VoteImportResult.model_validate_json(await response.read())

    # --- pairs --------------------------------------------------------------------------

    async def next_pair(self, strategy: Strategy | None = None, *, category: str | None = None) -> Pair:
        """``GET /mab/next_comparison``: the pair to show next, with its ``pair_token``;
        ``category`` focuses the choice on what that category's board does not know yet."""
        return await self._model(
            Pair,
            "GET",
            "/mab/next_comparison",
            route="GET /mab/next_comparison",
            params={"strategy": strategy, "category": category},
        )

    async def content_pair(self, *, seed: int | None = None) -> ContentPair:
        """``GET /comparisons/next``: a pair chosen by content dissimilarity."""
        return await self._model(
            ContentPair, "GET", "/comparisons/next", route="GET /comparisons/next", params={"seed": seed}
        )

    async def dissimilar_entities(self, *, seed: int | None = None) -> list[Entity]:
        """``GET /dissimilar_entities``: the most dissimilar pair, as a list of two."""
        page = await self._page(_ENTITIES, "/dissimilar_entities", "GET /dissimilar_entities", seed=seed)
        return page.items

    # --- votes and the comparison log ---------------------------------------------------

    async def vote(
        self,
        entity1_id: int | Entity,
        entity2_id: int | Entity,
        winner: int | Entity | None,
        *,
        pair_token: str | None = None,
        voter: str | None = None,
        idempotency_key: str | None = None,
        verdict: Literal["win", "tie", "both_bad"] | None = None,
        category: str | None = None,
    ) -> Comparison:
        """``POST /comparisons/``: record that ``winner`` was preferred (None: a tie).

        ``verdict="both_bad"`` (with ``winner`` None) records that neither was good, kept
        apart from a tie; ``category`` names the criterion the vote judged.

        Pass the ``pair_token`` when the pair came from :meth:`next_pair` (or use
        :meth:`vote_on`); votes on pairs chosen elsewhere (imported judgements) go without.
        Pass ``idempotency_key`` to make a vote safe to send again after the *program*
        restarts; retries inside one call reuse a key either way. ``voter``: with an API
        key of the vote scope, your own id of the person this vote is cast for.
        """
        body = ComparisonCreate(
            entity1_id=_entity_id(entity1_id),
            entity2_id=_entity_id(entity2_id),
            selected_entity_id=None if winner is None else _entity_id(winner),
            pair_token=pair_token,
            verdict=verdict,
            category=category,
            voter=voter,
        )
        return await self._model(
            Comparison,
            "POST",
            "/comparisons/",
            route="POST /comparisons/",
            json=body,
            idempotency_key=idempotency_key,
        )

    async def vote_batch(
        self,
        votes: Iterable[tuple[int | Entity, int | Entity, int | Entity | None] | ComparisonCreate],
        *,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """``POST /comparisons/batch``: up to 1,000 votes stored in order in one transaction.

        Each vote is ``(entity1, entity2, winner)`` (winner None: a tie) or a
        :class:`ComparisonCreate` (with a ``pair_token``). The result has one entry per
        vote, in order: ``status`` 200 with the stored ``comparison``, or 404 / 409 with
        the reason it was not stored. Retries reuse one Idempotency-Key, so a batch is
        never stored twice.
        """
        items = [
            vote
            if isinstance(vote, ComparisonCreate)
            else ComparisonCreate(
                entity1_id=_entity_id(vote[0]),
                entity2_id=_entity_id(vote[1]),
                selected_entity_id=None if vote[2] is None else _entity_id(vote[2]),
            )
            for vote in votes
        ]
        return await self._model(
            BatchResult,
            "POST",
            "/comparisons/batch",
            route="POST /comparisons/batch",
            json=ComparisonBatch(votes=items),
            idempotency_key=idempotency_key,
        )

    async def vote_on(
        self, pair: Pair, winner: int | Entity | None, *, idempotency_key: str | None = None
    ) -> Comparison:
        """Record the verdict on a pair from :meth:`next_pair`, echoing its ``pair_token``."""
        return await self.vote(
            pair.entity1, pair.entity2, winner, pair_token=pair.pair_token, idempotency_key=idempotency_key
        )

    async def get_comparison(self, comparison_id: int) -> Comparison:
        """``GET /comparisons/{id}``."""
        path = f"/comparisons/{int(comparison_id)}"
        return await self._model(Comparison, "GET", path, route="GET /comparisons/{id}")

    async def list_comparisons(
        self, *, skip: int = 0, limit: int = 100, entity_id: int | None = None
    ) -> list[Comparison]:
        """``GET /comparisons/``: one page of the vote log, newest first."""
        page = await self._page(
            _COMPARISONS, "/comparisons/", "GET /comparisons/", skip=skip, limit=limit, entity_id=entity_id
        )
        return page.items

    def iter_comparisons(
        self, *, entity_id: int | None = None, page_size: int = 100
    ) -> AsyncIterator[Comparison]:
        """The vote log, newest first, a page at a time.

        Votes recorded while iterating push older ones down a page; those reappear at the
        top of the next page and are skipped (ids only fall), so each is yielded once.
        """
        pages = self._pages(
            _COMPARISONS, "/comparisons/", "GET /comparisons/", page_size, entity_id=entity_id
        )
        return self._once_each(pages)

    async def mab_update(self, comparison_id: int) -> Message:
        """``POST /mab/update`` (compatibility: votes already update the bandit)."""
        return await self._model(
            Message, "POST", "/mab/update", route="POST /mab/update", params={"comparison_id": comparison_id}
        )

    # --- the leaderboard ----------------------------------------------------------------

    async def ratings(
        self,
        *,
        by: Literal["rating", "score"] | None = None,
        model: Literal["online", "bt"] = "online",
        skip: int = 0,
        limit: int | None = None,
        detail: Literal["basic", "full"] = "basic",
        provisional: Literal["last", "inline"] = "last",
        category: str | None = None,
    ) -> Page[RankedEntity]:
        """``GET /ratings``: the leaderboard with ranks.

        ``by=rating`` (the default) orders by Elo (as the original), ``by=score`` by the
        Bayesian score with shared ranks for overlapping intervals; ``model=bt`` uses the
        Bradley-Terry fit of the whole log. Without ``limit`` the server streams the whole
        board and this reads all of it; :meth:`iter_ratings` reads a large board in pages
        instead. ``detail="full"`` orders by score, marks each entry ``provisional`` and
        gives its ``rank_interval_95``; provisional entries come last unless
        ``provisional="inline"``. ``category`` reads the fitted board of that category's
        votes only.
        """
        extra: dict[str, Any] = {"detail": detail, "provisional": provisional} if detail == "full" else {}
        if category is not None:
            extra["category"] = category
        page = await self._page(
            _RANKED, "/ratings", "GET /ratings", by=by, model=model, skip=skip, limit=limit, **extra
        )
        if page.total is None and limit is None:
            # The streamed whole board comes without a count: it is the count.
            return Page(page.items, skip + len(page.items))
        return page

    async def progress(
        self,
        *,
        model: Literal["online", "bt"] = "online",
        target_tau: float = 0.8,
        top_k: int = 10,
        category: str | None = None,
    ) -> Progress:
        """``GET /ratings/progress``: the board's expected Kendall tau against the truth, the
        share of settled neighbours, and the votes still needed for ``target_tau`` and to
        settle the top ``top_k``."""
        return await self._model(
            Progress,
            "GET",
            "/ratings/progress",
            route="GET /ratings/progress",
            params={"model": model, "target_tau": target_tau, "top_k": top_k, "category": category},
        )

    async def categories(self) -> list[CategoryCount]:
        """``GET /ratings/categories``: every category votes were given in, with its votes."""
        answer = await self._call("GET", "/ratings/categories", route="GET /ratings/categories")
        return _CATEGORIES.validate_json(answer.body)

    async def attributes(self) -> list[AttributeCount]:
        """``GET /ratings/attributes``: every entity attribute a board can control for."""
        answer = await self._call("GET", "/ratings/attributes", route="GET /ratings/attributes")
        return _ATTRIBUTES.validate_json(answer.body)

    async def controlled_ratings(
        self,
        control: Iterable[str],
        *,
        category: str | None = None,
        detail: Literal["basic", "full"] = "basic",
        provisional: Literal["last", "inline"] = "last",
        skip: int = 0,
        limit: int | None = None,
    ) -> ControlledBoard:
        """``GET /ratings?control=...``: the fitted board with those entity attributes
        controlled for (style control): adjusted scores and ranks beside the unadjusted
        ones, and the fitted coefficient of each attribute."""
        params: dict[str, Any] = {"control": ",".join(control), "skip": skip}
        if detail == "full":
            params.update(detail=detail, provisional=provisional)
        if category is not None:
            params["category"] = category
        if limit is not None:
            params["limit"] = limit
        return await self._model(ControlledBoard, "GET", "/ratings", route="GET /ratings", params=params)

    def iter_ratings(
        self,
        *,
        by: Literal["rating", "score"] = "rating",
        model: Literal["online", "bt"] = "online",
        page_size: int = 1000,
    ) -> AsyncIterator[RankedEntity]:
        """The leaderboard a page at a time (votes cast meanwhile may reorder later pages)."""
        return self._pages(_RANKED, "/ratings", "GET /ratings", page_size, by=by, model=model)

    async def voters(self, *, skip: int = 0, limit: int = 100) -> VotersReport:
        """``GET /voters`` (superusers): each voter's reliability, weight and influence,
        most active first, and the entities whose rating rests on few voters."""
        return await self._model(
            VotersReport, "GET", "/voters", route="GET /voters", params={"skip": skip, "limit": limit}
        )

    # --- exports ------------------------------------------------------------------------

    def export_comparisons(self) -> AsyncIterator[dict[str, Any]]:
        """Every comparison, oldest first, as records read one line at a time (superusers).

        The records carry every exported column (new server versions may add some), so
        they are plain dicts; timestamps stay ISO 8601 strings.
        """
        return self._records("/export/comparisons", "GET /export/comparisons", {"format": "jsonl"})

    def export_comparisons_raw(self, format: ExportFormat = "jsonl") -> AsyncIterator[bytes]:
        """The comparison export's bytes as they arrive (for writing to a file)."""
        params = {"format": format}
        return self._download("/export/comparisons", "GET /export/comparisons", params, by_line=False)

    async def download_comparisons(self, path: str | PathLike[str], format: ExportFormat = "jsonl") -> int:
        """Write the comparison export to ``path``; returns the number of bytes written.

        The file is written under a temporary name and renamed when complete, so an
        interrupted download never leaves a file that looks whole.
        """
        return await self._save(path, self.export_comparisons_raw(format))

    def export_entities(self) -> AsyncIterator[dict[str, Any]]:
        """``GET /export/entities``: every live entity as records, one line at a time (superusers).

        Plain dicts, like :meth:`export_comparisons`; a list of them is a valid argument of
        :meth:`import_entities`.
        """
        return self._records("/export/entities", "GET /export/entities", {"format": "jsonl"})

    def export_entities_raw(self, format: ExportFormat = "jsonl") -> AsyncIterator[bytes]:
        """The entity export's bytes as they arrive: a valid import file."""
        params = {"format": format}
        return self._download("/export/entities", "GET /export/entities", params, by_line=False)

    async def download_entities(self, path: str | PathLike[str], format: ExportFormat = "jsonl") -> int:
        """Write the entity export to ``path`` (as :meth:`download_comparisons`)."""
        return await self._save(path, self.export_entities_raw(format))

    def export_preferences(
        self, format: PreferenceFormat, *, ties: Literal["skip", "keep"] = "skip"
    ) -> AsyncIterator[dict[str, Any]]:
        """``GET /comparisons/export/preferences``: preference data read one record at a time
        (superusers).

        ``dpo``: ``{prompt, chosen, rejected}`` per vote between two entities with the same
        ``prompt`` (``ties="keep"`` adds ties, marked ``tie: true``); ``arena``: ``{model_a,
        model_b, winner, judge, tstamp}`` per vote, with hashed voter ids.
        """
        params = {"format": format, "ties": ties}
        return self._records("/comparisons/export/preferences", "GET /comparisons/export/preferences", params)

    def export_preferences_raw(
        self, format: PreferenceFormat, *, ties: Literal["skip", "keep"] = "skip"
    ) -> AsyncIterator[bytes]:
        """The preference export's JSON Lines bytes as they arrive."""
        params = {"format": format, "ties": ties}
        route = "GET /comparisons/export/preferences"
        return self._download("/comparisons/export/preferences", route, params, by_line=False)

    async def download_preferences(
        self, path: str | PathLike[str], format: PreferenceFormat, *, ties: Literal["skip", "keep"] = "skip"
    ) -> int:
        """Write a preference dataset to ``path`` (as :meth:`download_comparisons`)."""
        return await self._save(path, self.export_preferences_raw(format, ties=ties))

    # --- projects -----------------------------------------------------------------------

    async def list_projects(
        self, *, archived: bool = False, skip: int = 0, limit: int = 100
    ) -> list[ProjectOut]:
        """``GET /projects/``: the projects you may see (``archived=True``: the archived
        ones, superusers)."""
        params = {"archived": "true" if archived else None, "skip": skip, "limit": limit}
        page = await self._page(_PROJECTS, "/projects/", "GET /projects/", **params)
        return page.items

    async def create_project(
        self,
        slug: str,
        name: str,
        *,
        description: str = "",
        visibility: Literal["private", "public"] = "private",
        **settings: Any,
    ) -> ProjectOut:
        """``POST /projects/``: a new project, with you as its owner. ``settings`` are the
        project's own ranking settings (``strategy``, ``elo_k_factor``, ``prior_sd``,
        ``exploration``, ``allow_ties``, ``allow_anonymous``, ``daily_vote_cap``, ``trust_mode``,
        ``provisional_max_uncertainty``, ``provisional_min_votes``, ``ranking_objective``,
        ``ranking_top_k``)."""
        body = ProjectCreate(slug=slug, name=name, description=description, visibility=visibility, **settings)
        return await self._model(ProjectOut, "POST", "/projects/", route="POST /projects/", json=body)

    async def get_project(self, slug: str) -> ProjectOut:
        """``GET /projects/{slug}``: settings (own and in force) and your role."""
        return await self._model(ProjectOut, "GET", f"/projects/{slug}", route="GET /projects/{slug}")

    async def update_project(self, slug: str, **changes: Any) -> ProjectUpdated:
        """``PATCH /projects/{slug}`` (owners): only the fields given change; a setting
        given as None follows the server's setting again. A change of the trust mode in
        force weighs the project's votes again (``ratings_rebuilt``: how many)."""
        body = ProjectUpdate(**changes)
        path = f"/projects/{slug}"
        return await self._model(ProjectUpdated, "PATCH", path, route="PATCH /projects/{slug}", json=body)

    async def archive_project(self, slug: str) -> Message:
        """``DELETE /projects/{slug}`` (owners): archive (read-only, hidden from lists)."""
        path = f"/projects/{slug}"
        return await self._model(Message, "DELETE", path, route="DELETE /projects/{slug}")

    async def restore_project(self, slug: str) -> ProjectOut:
        """``POST /projects/{slug}/restore`` (superusers): undo :meth:`archive_project`."""
        path = f"/projects/{slug}/restore"
        return await self._model(ProjectOut, "POST", path, route="POST /projects/{slug}/restore")

    async def list_members(self, slug: str) -> list[Member]:
        """``GET /projects/{slug}/members`` (owners)."""
        page = await self._page(_MEMBERS, f"/projects/{slug}/members", "GET /projects/{slug}/members")
        return page.items

    async def set_member(
        self, slug: str, username: str, role: Literal["owner", "editor", "voter", "viewer"]
    ) -> Member:
        """``PUT /projects/{slug}/members/{username}`` (owners): add or change a member."""
        path = f"/projects/{slug}/members/{username}"
        route = "PUT /projects/{slug}/members/{username}"
        return await self._model(Member, "PUT", path, route=route, json=MemberSet(role=role))

    async def remove_member(self, slug: str, username: str) -> Message:
        """``DELETE /projects/{slug}/members/{username}`` (owners)."""
        path = f"/projects/{slug}/members/{username}"
        return await self._model(Message, "DELETE", path, route="DELETE /projects/{slug}/members/{username}")

    # --- webhooks -----------------------------------------------------------------------

    async def create_webhook(
        self,
        url: str,
        events: Iterable[WebhookEvent],
        *,
        description: str = "",
        active: bool = True,
    ) -> WebhookCreated:
        """``POST /webhooks/`` (superusers): subscribe ``url`` to ``events``.

        The answer carries the signing ``secret``, shown this once: keep it. The server does
        not deduplicate this write (it would have to store the secret with the answer), so
        it is retried only when the request cannot have reached the server; after a
        :class:`~compere.client.errors.TransportError`, look in :meth:`list_webhooks`
        before subscribing again.
        """
        body = WebhookCreate(url=url, events=list(events), description=description, active=active)
        return await self._model(
            WebhookCreated, "POST", "/webhooks/", route="POST /webhooks/", json=body, replay_safe=False
        )

    async def list_webhooks(self) -> list[Webhook]:
        """``GET /webhooks/`` (superusers): every subscription, without secrets."""
        page = await self._page(_WEBHOOKS, "/webhooks/", "GET /webhooks/")
        return page.items

    async def get_webhook(self, webhook_id: int) -> Webhook:
        """``GET /webhooks/{id}`` (superusers)."""
        path = f"/webhooks/{int(webhook_id)}"
        return await self._model(Webhook, "GET", path, route="GET /webhooks/{webhook_id}")

    async def update_webhook(self, webhook_id: int, **changes: Any) -> Webhook:
        """``PATCH /webhooks/{id}`` with only the given fields (``url``, ``events``,
        ``description``, ``active``) (superusers)."""
        body = WebhookUpdate(**changes)
        path = f"/webhooks/{int(webhook_id)}"
        return await self._model(Webhook, "PATCH", path, route="PATCH /webhooks/{webhook_id}", json=body)

    async def delete_webhook(self, webhook_id: int) -> Message:
        """``DELETE /webhooks/{id}``: the subscription and its delivery log (superusers)."""
        path = f"/webhooks/{int(webhook_id)}"
        return await self._model(Message, "DELETE", path, route="DELETE /webhooks/{webhook_id}")

    async def list_deliveries(
        self, webhook_id: int, *, skip: int = 0, limit: int = 100, status: DeliveryStatus | None = None
    ) -> list[WebhookDelivery]:
        """``GET /webhooks/{id}/deliveries``: one page of the delivery log, newest first."""
        path = f"/webhooks/{int(webhook_id)}/deliveries"
        route = "GET /webhooks/{webhook_id}/deliveries"
        page = await self._page(_DELIVERIES, path, route, skip=skip, limit=limit, status=status)
        return page.items

    def iter_deliveries(
        self, webhook_id: int, *, status: DeliveryStatus | None = None, page_size: int = 100
    ) -> AsyncIterator[WebhookDelivery]:
        """The delivery log, newest first, a page at a time; each delivery once (deliveries
        logged while iterating push older ones down a page and are skipped, as in
        :meth:`iter_comparisons`). With ``status``, a delivery whose status changes meanwhile
        can leave the filtered log between pages and be missed."""
        path = f"/webhooks/{int(webhook_id)}/deliveries"
        route = "GET /webhooks/{webhook_id}/deliveries"
        return self._once_each(self._pages(_DELIVERIES, path, route, page_size, status=status))

    async def replay_delivery(self, webhook_id: int, delivery_id: int) -> WebhookDelivery:
        """``POST /webhooks/{id}/deliveries/{delivery_id}/replay``: the same body again, as a
        new delivery queued after the pending ones (superusers).

        Each call queues one more delivery, so it is retried only when the request cannot
        have reached the server.
        """
        path = f"/webhooks/{int(webhook_id)}/deliveries/{int(delivery_id)}/replay"
        route = "POST /webhooks/{webhook_id}/deliveries/{delivery_id}/replay"
        return await self._model(WebhookDelivery, "POST", path, route=route, replay_safe=False)
