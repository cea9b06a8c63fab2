"""`gemgate serve --workers N`: N server processes on one port, watched by the parent.

`serve` does the once-only startup (migrations, the secret key file, the admin token) before
this runs, so no worker ever races another for it. The parent then binds the port and starts
the workers: fresh interpreters (multiprocessing's spawn), which share nothing with the parent
but the listening sockets and the settings. Each worker is a whole gateway, exactly the one
process `gemgate serve` runs without `--workers`, draining its streams on SIGTERM; what workers
must agree on goes through Redis (`GEMGATE_REDIS_URL`) as it does between instances.

The port is bound once per worker with SO_REUSEPORT, all in the parent: the kernel spreads new
connections evenly over the sockets (one shared socket leaves it to whichever worker wakes
first, and one worker then took nearly all of a burst of 32 connections in a measured run), a worker
that dies leaves its socket's queue to its replacement, and a port already taken fails here,
once. Where SO_REUSEPORT does not spread connections (anything but Linux) the workers share
one socket.

The parent forwards SIGTERM (and SIGINT) to the workers and waits for their drain; a worker
that dies is replaced; workers that die before they serve mean a setting or the environment is
wrong, and the parent stops with a non-zero exit rather than restart them forever. A worker
whose parent is gone (killed outright) drains and exits too. Each worker leaves its metrics in
a folder of the parent's, so that `/metrics` on any worker counts for all of them; without
Redis, the workers also pace their accounts together through that folder (store/host_state.py).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from uvicorn.config import STARTUP_FAILURE

from gemgate import log_format
from gemgate.config import Settings

log = logging.getLogger("gemgate")

# Deaths before serving (of any worker, in a row) after which the parent gives up.
EARLY_DEATHS = 3
# Seconds a worker may take to start serving before it counts as dead (a hung start-up).
START_TIMEOUT = 60.0
# A worker draining gets drain_seconds, uvicorn's backstop 5 more; then it is killed.
STOP_GRACE = 10.0
_spawn = multiprocessing.get_context("spawn")


class BindError(Exception):
    """The port cannot be listened on; the message says which and why."""


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one address, bound with SO_REUSEPORT; where the kernel does
    not spread connections over such sockets (only Linux does), one socket that all share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    sockets: list[socket.socket] = []
    try:
        # SO_REUSEPORT would let these share the port with another process of this user that
        # set it too (a second `gemgate serve --workers`); a plain bind first says if it's free.
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        spread = sys.platform == "linux"
        for _ in range(count if spread else 1):
            sock = socket.socket(family)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spread:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(2048)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise BindError(f"cannot listen on {where}: {error.strerror or error}") from None
    return sockets if len(sockets) == count else sockets * count


def _worker(
    settings: Settings,
    number: int,
    sock: socket.socket,
    folder: Path,
    ready: Connection,
    lifeline: Connection,
) -> None:
    """A worker's whole life: one gateway serving on `sock` until told to stop."""
    from gemgate import server

    def started() -> None:
        ready.send(True)
        ready.close()

    def orphaned() -> None:
        # The parent never writes here: the end of the pipe means it died without stopping
        # the workers (SIGKILL, the OOM killer). Drain and go rather than serve on unwatched.
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, name="gemgate-lifeline", daemon=True).start()

    # uvicorn re-raises the stop signal once it has shut down; SIGINT's is a KeyboardInterrupt,
    # which would end a clean stop with a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(settings, server.Worker(number, sock, started, folder))


class _Slot:
    """One worker's place: its socket, and the process serving it now."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.process: BaseProcess | None = None
        self.ready: Connection | None = None
        self.serving = False
        self.began = 0.0


class Supervisor:
    def __init__(self, settings: Settings, sockets: list[socket.socket]) -> None:
        self.settings = settings
        self.slots = [_Slot(number, sock) for number, sock in enumerate(sockets, 1)]
        self.early_deaths = 0
        self.signals: list[int] = []
        self.lifeline, self._lifeline_held = _spawn.Pipe(duplex=False)
        # Each worker's metrics, for the others to add to theirs when scraped, and (without
        # Redis) the turns of paced accounts.
        self.folder = Path(tempfile.mkdtemp(prefix="gemgate-workers-"))
        (self.folder / "metrics").mkdir()

    def run(self) -> int:
        """Start the workers and keep them running until a signal; the process's exit code."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {
            sig: signal.signal(sig, lambda sig, _frame: self.signals.append(sig))
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        # A signal then also wakes the wait below at once.
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        try:
            for slot in self.slots:
                self._start(slot)
            code = self._watch(wake_r)
            self._stop()
            return code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
            for slot in self.slots:
                slot.sock.close()
            self.lifeline.close()
            self._lifeline_held.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _start(self, slot: _Slot) -> None:
        receive, send = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=_worker,
            args=(self.settings, slot.number, slot.sock, self.folder, send, self.lifeline),
            name=f"gemgate-worker-{slot.number}",
        )
        process.start()
        send.close()
        slot.process, slot.ready, slot.serving = process, receive, False
        slot.began = time.monotonic()

    def _watch(self, wake: socket.socket) -> int:
        while not self.signals:
            waiting: list[object] = [wake]
            for slot in self.slots:
                assert slot.process is not None
                waiting.append(slot.process.sentinel)
                if slot.ready is not None:
                    waiting.append(slot.ready)
            wait(waiting, timeout=1.0)  # type: ignore[arg-type]
            with contextlib.suppress(BlockingIOError):
                wake.recv(64)
            for slot in self.slots:
                if slot.ready is not None and slot.ready.poll():
                    self._serving(slot)
                assert slot.process is not None
                if not slot.serving and time.monotonic() - slot.began > START_TIMEOUT:
                    log.error("worker %d did not start within %gs", slot.number, START_TIMEOUT)
                    slot.process.kill()
                    slot.process.join()
                if slot.process.exitcode is not None and not self.signals:
                    code = self._replace(slot)
                    if code is not None:
                        return code
        return 0

    def _serving(self, slot: _Slot) -> None:
        assert slot.ready is not None
        with contextlib.suppress(EOFError, OSError):
            slot.ready.recv()
            slot.serving = True
            self.early_deaths = 0
        slot.ready.close()
        slot.ready = None

    def _replace(self, slot: _Slot) -> int | None:
        """A worker died: start another, or give up (an exit code) if none get to serve."""
        assert slot.process is not None
        if slot.ready is not None:
            slot.ready.close()
            slot.ready = None
        code = slot.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
        if not slot.serving:
            self.early_deaths += 1
            # uvicorn's code for a failed start-up (the app's own start failed): with no worker
            # serving, a second try would fail the same way.
            alone = not any(other.serving for other in self.slots)
            if (code == STARTUP_FAILURE and alone) or self.early_deaths >= EARLY_DEATHS:
                log.error(
                    "worker %d exited before serving (%s); stopping: see its lines above",
                    slot.number,
                    how,
                )
                return 1
        log.warning(
            "worker %d (pid %s) exited (%s); starting another", slot.number, slot.process.pid, how
        )
        self._start(slot)
        return None

    def _stop(self) -> None:
        """Every worker drains its streams and exits; the ones that hang past that are killed."""
        running = [s.process for s in self.slots if s.process and s.process.exitcode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        # New connections are refused from now on, as with one process: the workers close
        # their copies of the sockets as they begin to drain.
        for slot in self.slots:
            slot.sock.close()
        deadline = time.monotonic() + self.settings.drain_seconds + STOP_GRACE
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()


def run(settings: Settings, workers: int) -> int:
    """Serve with `workers` processes; the exit code for `gemgate serve`."""
    log_format.configure(settings.log_level, settings.log_format, process=True)
    try:
        sockets = listen(settings.host, settings.port, workers)
    except BindError as error:
        log.error("%s", error)
        return 1
    log.info("%d workers on %s:%d", workers, settings.host, settings.port)
    return Supervisor(settings, sockets).run()
