"""The running gateway's parts, built once per app, and kept in step with the store so that
keys and credentials changed by another process take effect without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemgate.api.request_id import CURRENT
from gemgate.audio import Encoder
from gemgate.channels._http import Http
from gemgate.channels.base import Channel
from gemgate.channels.gemini_api import GeminiAPI
from gemgate.channels.gemini_cli import GeminiCLI
from gemgate.channels.gemini_web import GeminiWeb
from gemgate.config import Settings
from gemgate.drain import Drain
from gemgate.fetch import Fetcher
from gemgate.ids import new_id
from gemgate.media import MediaStore
from gemgate.metrics import FAILURE_REASONS, Metrics
from gemgate.pool import Credential, Failure, Pool
from gemgate.routing import Router
from gemgate.services import credentials as credential_service
from gemgate.services.admission import Admission
from gemgate.services.cooldowns import CooldownLog
from gemgate.services.keys import KeyRing
from gemgate.services.limits import RequestRate
from gemgate.services.recent_errors import RecentErrors
from gemgate.services.stored_responses import StoredResponses
from gemgate.services.usage import UsageMeter
from gemgate.services.usage_report import SlotCache
from gemgate.signatures import SignatureCache
from gemgate.store import CredentialRecord, Store
from gemgate.store.host_state import HostState

if TYPE_CHECKING:
    from gemgate.store.redis_state import SharedState

log = logging.getLogger("gemgate")


class Gateway:
    def __init__(self, settings: Settings, workers_state: Path | None = None) -> None:
        self.settings = settings
        self.store = Store.from_settings(settings)
        self.http = Http(settings)
        self.keys = KeyRing()
        self.usage = UsageMeter(self.store)
        # Runtime state shared with other instances, when there are any (GEMGATE_REDIS_URL).
        self.shared: SharedState | None = None
        if settings.redis_url:
            from gemgate.store.redis_state import SharedState  # loaded only when used

            self.shared = SharedState(settings.redis_url, settings.redis_namespace, new_id())
        # Pacing, one refresh at a time and key limits hold over every instance through Redis;
        # without it, still over the workers of one `serve --workers N`.
        peers: SharedState | HostState | None = self.shared
        if peers is None and workers_state is not None:
            peers = HostState(workers_state)
        exclusive = peers.exclusive if peers is not None else None
        self.admission = Admission(RequestRate(), self.usage, peers)
        self.cooldowns = CooldownLog(self.store)
        self.pool = Pool(
            on_invalid=self._store_invalid,
            on_cooldown=self._announce_cooldown,
            on_failure=self._upstream_failed,
        )
        self.metrics = Metrics(self.pool)
        self.recent_errors = RecentErrors()
        self.request_log = settings.request_lines
        self.usage_slots = SlotCache()
        self.web = GeminiWeb(
            settings,
            self.store,
            self._save_secret,
            exclusive,
        )
        # The web channel first: unprefixed, it serves only names of its own (gemini-3-fast),
        # which the API channel's name rule would also claim.
        self.channels: dict[str, Channel] = {
            "gemini_official": self.web,
            "gemini": GeminiAPI(settings, self.http),
            "gemini_cli": GeminiCLI(settings, self.http, self.store, exclusive),
        }
        for cid, channel in self.channels.items():
            pacing = getattr(channel, "pacing", None)
            if pacing is not None:
                self.pool.pace(cid, pacing, peers)
        self.router = Router(self.channels, settings.aliases, self.pool.has_usable)
        self.signatures = SignatureCache(shared=self.shared)
        self.responses = StoredResponses(
            self.store, settings.responses_ttl, settings.responses_max_bytes
        )
        self.fetcher = Fetcher(settings)
        self.media = MediaStore(settings.data_dir, settings.media_ttl, settings.media_max_bytes)
        self.audio = Encoder(settings.ffmpeg)
        self.drain = Drain()
        self._revision = -1
        self._reloading = asyncio.Lock()
        self.credential_records: list[CredentialRecord] = []
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # `serve` has prepared the database (migrations, the key check) once, before any of its
        # processes start: they only open it.
        await self.store.open(prepare=False)
        await self.reload()
        await self.cooldowns.load_into(self.pool)
        await self.usage.flush()
        if self.shared is not None:
            await self.shared.start(self._on_event)
        self._watcher = asyncio.create_task(self._watch(), name="gemgate-store-watch")
        self._sweeper = asyncio.create_task(
            self.media.sweep(self.settings.media_cleanup_interval), name="gemgate-media-sweep"
        )

    async def stop(self) -> None:
        # The watcher is let finish its round, never cancelled: a write cut in the middle
        # would lose the usage records it had taken.
        self._stopping.set()
        if self._watcher is not None:
            await self._watcher
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.usage.flush()
        await self.web.chats.flush()
        await self.cooldowns.flush()
        await self.responses.close()
        if self.shared is not None:
            await self.shared.stop()
        await self.http.close()
        await self.web.close()
        await self.fetcher.close()
        await self.store.close()

    async def reload(self) -> None:
        """Load keys and credentials if the store changed since the last load."""
        # One at a time: the admin API reloads after each change while the watcher does too,
        # and a load that read the store earlier must not land after one that read it later.
        async with self._reloading:
            revision = await self.store.revision()
            if revision == self._revision:
                return
            self.keys.replace(await self.store.list_keys())
            records = await self.store.list_credentials()
            # Kept as loaded (secrets opened once per change), for the admin board to read.
            self.credential_records = records
            self.pool.load(
                [credential_service.to_pool(r) for r in records],
                {r.id: r.status_reason or "invalid" for r in records if r.status == "invalid"},
            )
            self._revision = revision

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.reload_interval)
            if self._stopping.is_set():
                return
            try:
                await self.reload()
                await self.cooldowns.load_into(self.pool)
            except Exception:
                log.exception("could not reload keys and credentials from the store")
            try:
                await self.usage.flush()
                await self.web.chats.flush()
            except Exception:
                log.exception("could not write usage records; they are kept for the next try")
            try:
                self.metrics.publish()
            except OSError:
                log.exception("could not leave this worker's metrics for the others")

    def _upstream_failed(self, credential: Credential, model: str, failure: Failure) -> None:
        self.metrics.upstream_error(credential.id, credential.channel, failure)
        self.recent_errors.add(
            "upstream",
            failure.error.status,
            failure.reason or failure.error.message,
            request_id=CURRENT.get(),
            channel=credential.channel,
            model=model,
            credential_id=credential.id,
            kind=FAILURE_REASONS.get(failure.action, failure.action),
        )

    async def _store_invalid(self, credential: Credential, reason: str) -> None:
        if self.shared is not None:
            self.shared.announce({"type": "invalid", "credential": credential.id, "reason": reason})
        try:
            await credential_service.mark_invalid(self.store, credential.id, reason)
        except Exception:
            log.exception("could not record credential %s as invalid", credential.id)

    async def _save_secret(self, credential: Credential, secret: dict[str, Any]) -> None:
        await credential_service.save_secret(self.store, credential.id, secret)

    def _announce_cooldown(self, credential: Credential, model: str, seconds: float) -> None:
        # Recorded in the store for the CLI and instances without Redis (off the request path).
        reason = self.pool.state(credential.id).last_error or ""
        self.cooldowns.note(credential, model, seconds, reason)
        if self.shared is not None:
            # Wall-clock end: monotonic clocks of two machines have nothing in common.
            until = time.time() + seconds
            self.shared.announce(
                {"type": "cooldown", "credential": credential.id, "model": model, "until": until}
            )

    async def _on_event(self, event: dict[str, Any]) -> None:
        """What another instance (or the CLI) announced, applied to this one's own state."""
        kind = event.get("type")
        if kind == "cooldown":
            seconds = float(event["until"]) - time.time()
            if seconds > 0:
                self.pool.rest(int(event["credential"]), str(event["model"]), seconds)
        elif kind == "invalid":
            self.pool.state(int(event["credential"])).invalid_reason = str(event["reason"])
        elif kind == "reload":
            await self.reload()
