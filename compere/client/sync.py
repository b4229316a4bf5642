"""A blocking wrapper around :class:`~compere.client.aio.AsyncClient` for scripts and notebooks.

The async client runs on an event loop in a background thread of its own, so the wrapper
works the same from plain scripts and from programs that already run a loop (a notebook).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from compere.client.aio import AsyncClient

__all__ = ["Client"]

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    def call(self: Client, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self.aio, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _iterating(
    method: Callable[Concatenate[AsyncClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[Client, P], Iterator[T]]:
    def call(self: Client, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._iterate(method(self.aio, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class Client:
    """The same methods as :class:`AsyncClient`, blocking; iterators are plain iterators.

    ``with Client("http://127.0.0.1:8090") as compere: compere.create_entity("tea")``.
    Keyword arguments are those of :class:`AsyncClient`. The instance may be shared by
    threads: calls from several threads run concurrently on its loop.
    """

    def __init__(self, base_url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="compere-client", daemon=True)
        self._thread.start()

        async def build() -> AsyncClient:
            return AsyncClient(base_url, **options)

        self.aio: AsyncClient = self._run(build())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(source)
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self._run(step())
                if not more:
                    return
                yield item  # type: ignore[misc]  # an item, since more is True
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None and not self._loop.is_closed():
                self._run(closer())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background loop."""
        if self._loop.is_closed():
            return
        self._run(self.aio.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def token(self) -> str | None:
        """The bearer token sent with each request (set by :meth:`login`)."""
        return self.aio.token

    @token.setter
    def token(self, value: str | None) -> None:
        self.aio.token = value

    health = _blocking(AsyncClient.health)
    ready = _blocking(AsyncClient.ready)
    login = _blocking(AsyncClient.login)
    logout = _blocking(AsyncClient.logout)
    logout_all = _blocking(AsyncClient.logout_all)
    change_password = _blocking(AsyncClient.change_password)
    me = _blocking(AsyncClient.me)
    create_user = _blocking(AsyncClient.create_user)
    list_users = _blocking(AsyncClient.list_users)
    iter_users = _iterating(AsyncClient.iter_users)
    disable_user = _blocking(AsyncClient.disable_user)
    enable_user = _blocking(AsyncClient.enable_user)
    create_api_key = _blocking(AsyncClient.create_api_key)
    list_api_keys = _blocking(AsyncClient.list_api_keys)
    revoke_api_key = _blocking(AsyncClient.revoke_api_key)
    create_entity = _blocking(AsyncClient.create_entity)
    get_entity = _blocking(AsyncClient.get_entity)
    update_entity = _blocking(AsyncClient.update_entity)
    delete_entity = _blocking(AsyncClient.delete_entity)
    list_entities = _blocking(AsyncClient.list_entities)
    iter_entities = _iterating(AsyncClient.iter_entities)
    import_entities = _blocking(AsyncClient.import_entities)
    import_comparisons = _blocking(AsyncClient.import_comparisons)
    next_pair = _blocking(AsyncClient.next_pair)
    content_pair = _blocking(AsyncClient.content_pair)
    dissimilar_entities = _blocking(AsyncClient.dissimilar_entities)
    vote = _blocking(AsyncClient.vote)
    vote_on = _blocking(AsyncClient.vote_on)
    vote_batch = _blocking(AsyncClient.vote_batch)
    get_comparison = _blocking(AsyncClient.get_comparison)
    list_comparisons = _blocking(AsyncClient.list_comparisons)
    iter_comparisons = _iterating(AsyncClient.iter_comparisons)
    mab_update = _blocking(AsyncClient.mab_update)
    ratings = _blocking(AsyncClient.ratings)
    progress = _blocking(AsyncClient.progress)
    categories = _blocking(AsyncClient.categories)
    attributes = _blocking(AsyncClient.attributes)
    controlled_ratings = _blocking(AsyncClient.controlled_ratings)
    iter_ratings = _iterating(AsyncClient.iter_ratings)
    voters = _blocking(AsyncClient.voters)
    export_comparisons = _iterating(AsyncClient.export_comparisons)
    export_comparisons_raw = _iterating(AsyncClient.export_comparisons_raw)
    download_comparisons = _blocking(AsyncClient.download_comparisons)
    export_entities = _iterating(AsyncClient.export_entities)
    export_entities_raw = _iterating(AsyncClient.export_entities_raw)
    download_entities = _blocking(AsyncClient.download_entities)
    export_preferences = _iterating(AsyncClient.export_preferences)
    export_preferences_raw = _iterating(AsyncClient.export_preferences_raw)
    download_preferences = _blocking(AsyncClient.download_preferences)
    list_projects = _blocking(AsyncClient.list_projects)
    create_project = _blocking(AsyncClient.create_project)
    get_project = _blocking(AsyncClient.get_project)
    update_project = _blocking(AsyncClient.update_project)
    archive_project = _blocking(AsyncClient.archive_project)
    restore_project = _blocking(AsyncClient.restore_project)
    list_members = _blocking(AsyncClient.list_members)
    set_member = _blocking(AsyncClient.set_member)
    remove_member = _blocking(AsyncClient.remove_member)
    create_webhook = _blocking(AsyncClient.create_webhook)
    list_webhooks = _blocking(AsyncClient.list_webhooks)
    get_webhook = _blocking(AsyncClient.get_webhook)
    update_webhook = _blocking(AsyncClient.update_webhook)
    delete_webhook = _blocking(AsyncClient.delete_webhook)
    list_deliveries = _blocking(AsyncClient.list_deliveries)
    iter_deliveries = _iterating(AsyncClient.iter_deliveries)
    replay_delivery = _blocking(AsyncClient.replay_delivery)
