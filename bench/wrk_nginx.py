"""A load generator and an upstream that cost almost nothing per request: wrk and nginx.

On a 2-core machine, `gemgate serve --workers 2` can only show what it gives if the client and
the upstream leave the cores to gemgate; the Python load generator and fake Gemini API of
`overhead.py` each cost a good part of a core at a few thousand requests a second. These two,
in C, cost a few tens of µs per request together. Both are Debian packages:
`apt-get install wrk nginx`. Used by the worker rows of `overhead.py`.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WRK_TAG = "wrk-result"  # marks the line the Lua `done` hook prints

# Counts, per wrk thread, the answers that are not a 200 with the wanted bytes in the body, and
# prints one line wrk_run parses. Filled in with str.format: the Lua braces are doubled.
_LUA = """\
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, {expect}, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format("{tag} %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration, bad_total, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class WrkResult:
    answers: int  # responses wrk read, good or bad
    seconds: float
    bad: int  # answers that were not a 200 with the wanted body
    socket_errors: int  # connect, read, write errors and timeouts: no answer at all
    p50_ms: float
    p99_ms: float
    cpu_s: float  # wrk's own CPU time

    @property
    def good(self) -> int:
        return self.answers - self.bad

    @property
    def errors(self) -> int:
        return self.bad + self.socket_errors


def available() -> dict[str, str | None]:
    return {"wrk": shutil.which("wrk"), "nginx": shutil.which("nginx")}


def _lua(text: str) -> str:
    """`text` as a Lua string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def wrk_script(
    directory: Path, name: str, body: bytes, headers: dict[str, str], expect: str
) -> Path:
    """A wrk Lua script that POSTs `body` with `headers` and counts as bad every answer that is
    not a 200 containing `expect`."""
    body_path = directory / f"{name}.body"
    body_path.write_bytes(body)
    lines = "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())
    script = directory / f"{name}.lua"
    text = _LUA.format(
        body_path=_lua(str(body_path)), headers=lines, expect=_lua(expect), tag=WRK_TAG
    )
    script.write_text(text)
    script.chmod(0o600)  # it holds a client key, if only a throwaway one
    return script


def wrk_run(script: Path, url: str, connections: int, seconds: int) -> WrkResult:
    """One wrk run: one thread (it keeps up with thousands of requests a second), `connections`
    keep-alive connections, for `seconds` (wrk takes whole seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 30,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith(WRK_TAG)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    answers, micros, bad, *socket_errors, p50, p99 = (int(v) for v in line.split()[1:])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return WrkResult(answers, micros / 1e6, bad, sum(socket_errors), p50 / 1000, p99 / 1000, cpu)


_NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server_tokens off;
  server {{
    listen 127.0.0.1:{port};
    default_type "application/json; charset=UTF-8";
    location ~ "^/v1beta/models/{model}:generateContent$" {{
      if ($request_method != POST) {{ return 405; }}
      if ($http_x_goog_api_key != "{key}") {{ return 403 '{denied}'; }}
      return 200 '{answer}';
    }}
    location / {{ return 404 '{not_found}'; }}
  }}
}}
"""
_DENIED = '{"error":{"code":403,"message":"wrong API key","status":"PERMISSION_DENIED"}}'
_NOT_FOUND = '{"error":{"code":404,"message":"not served here","status":"NOT_FOUND"}}'


def _post(port: int, path: str, key: str) -> int:
    """The status of a small POST, over a raw socket (no proxy settings, no client library)."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-goog-api-key: {key}\r\n"
        "content-type: application/json\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(request)
        head = sock.recv(64)
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0


@contextlib.contextmanager
def nginx_upstream(
    tmp: Path, port: int, model: str, key: str, answer: bytes
) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground (1 worker, no access log, every path in `tmp`) answering
    `POST /v1beta/models/<model>:generateContent` with `answer` when `x-goog-api-key` is `key`,
    and 403 otherwise: a gateway sending the wrong key fails loudly rather than passing."""
    text = answer.decode()
    # nginx would read `$` as a variable and `\` or `'` as quoting in its single-quoted string.
    if any(c in text for c in "$\\'\n") or any(c in key + model for c in "$\\'\" "):
        raise ValueError("the answer, key or model has characters nginx would misread")
    conf = tmp / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            tmp=tmp, port=port, model=model.replace(".", r"\."), key=key,
            answer=text, denied=_DENIED, not_found=_NOT_FOUND,
        )
    )  # fmt: skip
    log = (tmp / "nginx.log").open("wb")
    process = subprocess.Popen(
        ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        path = f"/v1beta/models/{model}:generateContent"
        began = time.perf_counter()
        while True:
            if process.poll() is not None:
                error = (tmp / "nginx-error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited with {process.returncode}: {error}")
            with contextlib.suppress(OSError):
                if _post(port, path, key) == 200:
                    break
            if time.perf_counter() - began > 10:
                raise RuntimeError("nginx did not answer within 10 s")
            time.sleep(0.01)
        if _post(port, path, key + "-wrong") != 403:
            raise RuntimeError("nginx accepted a wrong API key")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()  # nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
