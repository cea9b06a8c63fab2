"""Running the app under uvicorn, with a shutdown that drains streams before ending them."""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from gemgate import log_format, log_redaction
from gemgate.app import build_app
from gemgate.config import Settings
from gemgate.gateway import Gateway


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose shutdown first starts the gateway's drain window: streams under
    way get `drain_seconds` to finish, then end with their format's error event."""

    def __init__(
        self,
        config: uvicorn.Config,
        gateway: Gateway,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up made (modules, settings, the store's first load) lives as long as the
        # process: out of the collector's sight, each full collection stops walking it.
        gc.freeze()
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.drain.begin(self.gateway.settings.drain_seconds)
        await super().shutdown(sockets)


@dataclass(frozen=True)
class Worker:
    """One of the processes of `gemgate serve --workers N`: the socket the parent bound for
    it, what to call once it accepts requests, and the parent's folder where the workers add
    up their metrics and agree on their accounts' pacing."""

    number: int
    sock: socket.socket
    started: Callable[[], None]
    folder: Path


def run(settings: Settings, worker: Worker | None = None) -> None:
    """Serve until SIGTERM or SIGINT: on `settings.host:port`, or as a worker."""
    several = worker is not None
    log_format.configure(settings.log_level, settings.log_format, process=several)
    gateway = Gateway(settings, worker.folder / "state" if worker is not None else None)
    if worker is not None:
        gateway.metrics.share(worker.folder / "metrics", str(worker.number))
    json_logs = settings.log_format == "json"
    config = uvicorn.Config(
        build_app(settings, gateway),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # gemgate serves no WebSocket: uvicorn's default would load the websockets package.
        ws="none",
        log_level=settings.log_level,
        # JSON logs: uvicorn's loggers go through the root handler (and its JSON lines), and
        # gemgate's own request lines replace uvicorn's access log.
        log_config=None if json_logs else log_format.uvicorn_text(several),
        access_log=bool(settings.access_log) and not json_logs,
        lifespan="on",
        # A backstop only: the drain ends streams (with an error event) before this.
        timeout_graceful_shutdown=int(settings.drain_seconds) + 5,
    )
    # uvicorn sets up its loggers when the config is made; the filter goes on after that.
    log_redaction.install()
    if worker is None:
        DrainingServer(config, gateway).run()
    else:
        DrainingServer(config, gateway, worker.started).run([worker.sock])
