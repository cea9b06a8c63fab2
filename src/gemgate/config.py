"""Settings: `GEMGATE_*` environment variables over an optional TOML file.

Nothing here touches the disk or the network at import time; `Settings.load` reads the TOML file
only when it is called. msgspec turns each value as written into its field's type: it does here
what pydantic-settings did, for 1 MB of a server's memory instead of 15.
"""

from __future__ import annotations

import os
import tomllib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import msgspec


class Secret:
    """A setting no repr or log line shows; `get_secret_value()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        # An empty variable sets nothing, as an empty string did.
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"


class Settings(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    # Server processes sharing the port: a number, or "auto" for one per usable core.
    workers: int | Literal["auto"] = 1
    data_dir: Path = Path("gemgate-data")
    database_url: str | None = None
    # The key that seals upstream secrets in the database (Fernet, url-safe base64); when unset,
    # the key file is read, and `serve` creates it on first start.
    secret_key: Secret | None = None
    secret_key_file: Path | None = None
    redis_url: str | None = None
    # Prefix of every Redis key and channel: deployments that share one Redis stay apart.
    redis_namespace: str = "gemgate"
    admin_token: Secret | None = None

    gemini_api_base: str = "https://generativelanguage.googleapis.com"
    code_assist_base: str = "https://cloudcode-pa.googleapis.com"
    oauth_token_url: str = "https://oauth2.googleapis.com/token"
    gemini_web_base: str = "https://gemini.google.com"
    google_accounts_base: str = "https://accounts.google.com"
    web_upload_base: str = "https://content-push.googleapis.com"
    public_url: str | None = None

    # Outbound proxy for every upstream call; a credential's own proxy wins over it.
    proxy: str | None = None
    connect_timeout: float = 10.0
    # Longest silence tolerated from an upstream, between bytes, not for the whole answer.
    read_timeout: float = 120.0

    # gemini_official: answers at once per account and milliseconds between two requests on
    # one account (Google blocks an IP after a burst of 80-180 requests; a steady 10 a minute
    # ran unblocked), and how long a request may wait for an account's turn.
    web_concurrency: int = 2
    web_min_interval_ms: int = 3000
    pacing_max_wait: float = 60.0
    # gemini_official: the model table as JSON (README); empty = the built-in defaults.
    web_models: str = ""
    # gemini_official: curl_cffi browser impersonation target, and seconds between rotations
    # of an account's __Secure-1PSIDTS.
    web_impersonate: str = "chrome"
    web_rotate_interval: float = 600.0
    # gemini_official: seconds a web chat gemgate produced may be continued; the prompt bytes
    # sent inline (the web app cuts past ~130,000) and at most as a history attachment.
    web_chat_ttl: float = 1800.0
    web_prompt_max_bytes: int = 120_000
    web_attachment_max_bytes: int = 150_000
    # gemini_official: the largest file (a generated image or video) taken from the web app's
    # media hosts: a download past it is cut off, never held whole in memory.
    web_download_max_bytes: int = 100 * 1024 * 1024
    # gemini_official: seconds between polls of a rendering video or a running deep research
    # (the web app's own client polls every 10 s), and the longest each may take.
    web_poll_interval: float = 10.0
    web_video_timeout: float = 600.0
    web_research_timeout: float = 1800.0

    # gemini_cli: seconds between polls of an account's onboarding operation (Gemini CLI: 5).
    onboard_poll_interval: float = 5.0
    # gemini_cli: model ids to serve besides the built-in Code Assist list, comma-separated.
    code_assist_extra_models: str = ""

    # How often a server re-reads keys and credentials written by another process (the CLI).
    reload_interval: float = 2.0
    models_cache_ttl: float = 600.0
    # Client-facing model name -> "channel/model" or a plain upstream model name.
    aliases: dict[str, str] = {}

    # Largest request accepted, in bytes: the body as sent, plus media fetched for it (counted
    # as the base64 that goes upstream). The Gemini API's own limit is about 20 MB.
    max_body_bytes: int = 20 * 1024 * 1024

    # Hosts (comma-separated names or IPs) whose URLs clients may have fetched even when they
    # resolve to a private or loopback address.
    fetch_allow_hosts: str = ""
    # Largest file fetched for a client-given URL, in bytes.
    fetch_max_bytes: int = 20 * 1024 * 1024
    # Inline media (counted as base64) a Gemini API request may carry; past it the largest go
    # through the Files API. Google's limit for a whole request is about 20 MB.
    inline_max_bytes: int = 18 * 1024 * 1024
    # Seconds to wait for the Files API to finish processing an upload (videos take a while).
    files_wait: float = 300.0
    # Seconds a client-given URL may take to download, redirects included.
    fetch_timeout: float = 30.0
    # Seconds a link to a generated image stays valid.
    media_ttl: float = 86400.0
    # Generated images in chat answers: "url" (a gemgate link) or "data" (a data: URL).
    media_links: Literal["url", "data"] = "url"
    # Most bytes of generated media kept under the data folder; the oldest go first.
    media_max_bytes: int = 1024 * 1024 * 1024
    # Seconds between sweeps of expired (or over-the-cap) media files.
    media_cleanup_interval: float = 600.0
    # The model of an images API request that names none.
    image_model: str = "gemini-2.5-flash-image"

    # Models that only speak (comma-separated patterns): their answers are audio, they read the
    # last user message aloud, and chat clients get the audio in `message.audio`.
    speech_models: str = "*-tts,*-tts-*"
    # The ffmpeg binary that encodes speech as mp3, flac, opus or aac (default: ffmpeg on PATH).
    ffmpeg: str | None = None

    # Seconds that streams under way get to finish on shutdown (SIGTERM); those still running
    # then end with their format's error event, their usage recorded.
    drain_seconds: float = 30.0

    # Responses API answers kept for previous_response_id (store: true, OpenAI's default):
    # seconds each is kept, and the largest one kept, in bytes (its turn's input and output).
    responses_ttl: float = 30 * 86400.0
    responses_max_bytes: int = 8 * 1024 * 1024

    log_level: str = "info"
    # json: one JSON object per line, with one line per request (see gemgate.log_format).
    log_format: Literal["text", "json"] = "text"
    # One line per request. Unset: on with JSON logs (gemgate's own request lines), off with
    # text logs (where it turns on uvicorn's access log).
    access_log: bool | None = None
    # Bearer token that /metrics asks for; unset, /metrics is open (bind to a private address).
    metrics_token: Secret | None = None

    @property
    def request_lines(self) -> bool:
        """Whether gemgate writes its own line per request (JSON logs only)."""
        return self.log_format == "json" and self.access_log is not False

    @property
    def worker_count(self) -> int:
        """How many server processes `serve` runs; "auto" counts the cores this process may
        run on (its CPU affinity, as a container or taskset leaves it)."""
        if self.workers != "auto":
            return self.workers
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gemgate.db').resolve()}"

    @property
    def resolved_secret_key_file(self) -> Path:
        return (self.secret_key_file or self.data_dir / "secret.key").resolve()

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Build settings: overrides (CLI flags) > environment > TOML file > defaults."""
        config_file = config_file or os.environ.get("GEMGATE_CONFIG")
        path = Path(config_file) if config_file else None
        written: dict[str, Any] = {}
        if path is not None:
            written |= _from_toml(path)
        written |= _from_environment()
        written |= {name: value for name, value in overrides.items() if value is not None}
        values, problems = {}, []
        for name, value in written.items():
            try:
                values[name] = _read(name, value)
            except ValueError as error:
                problems.append(_describe(name, value, str(error), path))
        if problems:
            raise SettingsError("; ".join(problems))
        return cls(**values)


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names it as the operator wrote it."""


def _from_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        table = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(f"config file {path}: {error}") from None
    # Unknown names are left alone, as in the environment: a newer file still starts.
    return {name.lower(): value for name, value in table.items() if name.lower() in _TYPES}


def _from_environment() -> dict[str, Any]:
    found = {}
    for variable, value in os.environ.items():
        if variable[:8].upper() == "GEMGATE_" and (name := variable[8:].lower()) in _TYPES:
            found[name] = value
    return found


def _read(name: str, value: Any) -> Any:
    """The value of setting `name` as written (text from a variable, or a TOML value) in its
    field's type; ValueError says what was expected."""
    special = _SPECIAL.get(name)
    if special is not None:
        return special(value)
    return _converted(_TYPES[name], value)


def _converted(kind: Any, value: Any) -> Any:
    if isinstance(value, str):
        if get_origin(kind) is dict:
            # A table in TOML; in a variable, the same as JSON.
            try:
                value = msgspec.json.decode(value)
            except msgspec.DecodeError:
                raise ValueError(f"expected {_expected(kind)}") from None
        elif {int, float, bool} & set(_members(kind)):
            value = value.strip()
            value = _BOOL_WORDS.get(value.lower(), value)
    try:
        return msgspec.convert(value, kind, strict=False, dec_hook=_decode_hook)
    except msgspec.ValidationError:
        raise ValueError(f"expected {_expected(kind)}") from None


def _decode_hook(kind: type, value: Any) -> Any:
    if kind in (Path, Secret) and isinstance(value, str):
        return kind(value)
    # msgspec reports this as a value of the wrong type, like any other.
    raise TypeError(f"expected {_expected(kind)}")


def _members(kind: Any) -> tuple[Any, ...]:
    """The types a value may have: those of a union, or the one."""
    if get_origin(kind) in (Union, types.UnionType):
        return tuple(member for member in get_args(kind) if member is not type(None))
    return (kind,)


def _expected(kind: Any) -> str:
    members = _members(kind)
    if len(members) > 1:
        return " or ".join(_expected(member) for member in members)
    (kind,) = members
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(kind))
    return _WORDS.get(kind, "text")


_WORDS: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    Path: "a path",
    dict[str, str]: "names and their values (a TOML table, or a JSON object)",
}
# More words for true and false, as pydantic-settings took them: configurations keep working.
_BOOL_WORDS = dict.fromkeys(("yes", "on", "y", "t"), "true") | dict.fromkeys(
    ("no", "off", "n", "f"), "false"
)


def _workers(value: Any) -> int | str:
    # One message for every wrong value, rather than one per member of the union.
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError("workers is a whole number of 1 or more, or auto")


def _aliases(value: Any) -> dict[str, str]:
    from gemgate import model_names
    from gemgate.errors import InvalidRequest

    aliases: dict[str, str] = _converted(dict[str, str], value)
    for name, target in aliases.items():
        try:
            model_names.check(target, "alias target")
        except InvalidRequest:
            raise ValueError(f"alias {name!r} leads to {target!r}: not a model name") from None
    return aliases


def _allow_list(value: Any) -> str:
    from gemgate.allow_list import AllowList

    hosts: str = _converted(str, value)
    AllowList(hosts)  # its ValueError names the entry it cannot read
    return hosts


_TYPES: dict[str, Any] = {field.name: field.type for field in msgspec.structs.fields(Settings)}
# Settings whose value is checked beyond its type.
_SPECIAL: dict[str, Callable[[Any], Any]] = {
    "workers": _workers,
    "aliases": _aliases,
    "fetch_allow_hosts": _allow_list,
}


def _describe(name: str, value: Any, reason: str, path: Path | None) -> str:
    # One line per bad value, named as the operator can set it.
    where = f"GEMGATE_{name.upper()}" + (f" (or `{name}` in {path})" if path else "")
    shown = ""
    if isinstance(value, str | int | float) and not any(w in name for w in ("secret", "token")):
        shown = f" (got {value!r})"
    return f"setting {where}: {reason}{shown}"
