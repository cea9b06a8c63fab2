"""The command line: serve (the default), keys, credentials, login, usage, db."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from gemgate.config import Settings
from gemgate.errors import GatewayError
from gemgate.services import cookie_import
from gemgate.services import credentials as credential_service
from gemgate.services import keys as key_service
from gemgate.store import DatabaseMissing, KeyRecord, Store

T = TypeVar("T")


class _DefaultServe(click.Group):
    """`gemgate` alone, or with only options, means `gemgate serve`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The group's own --config comes first and is not the start of serve's options.
        rest = args
        while rest and (rest[0] == "--config" or rest[0].startswith("--config=")):
            rest = rest[2:] if rest[0] == "--config" else rest[1:]
        if not rest or (rest[0].startswith("-") and rest[0] not in ("--help", "-h", "--version")):
            at = len(args) - len(rest)
            args = [*args[:at], "serve", *rest]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultServe)
@click.version_option(package_name="gemgate")
@click.option("--config", "config_file", envvar="GEMGATE_CONFIG", help="TOML settings file.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """gemgate: Google Gemini behind the OpenAI, Anthropic and Gemini APIs."""
    ctx.obj = config_file


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    try:
        return Settings.load(ctx.find_root().obj, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().obj = value


def _config_on_every_command(group: click.Group) -> None:
    """`--config FILE` is accepted after any command too, not only before it."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _config_on_every_command(command)
        else:
            command.params.append(
                click.Option(
                    ["--config"],
                    is_eager=True,
                    expose_value=False,
                    callback=_remember_config,
                    help="TOML settings file (env: GEMGATE_CONFIG).",
                )
            )


async def _open_store(settings: Settings, store: Store | None = None) -> Store:
    """Open the configured store. Only serve and db migrate create a database; every other
    command opens the one there is, and says which (on stderr: stdout stays for results)."""
    store = store or Store.from_settings(settings)
    try:
        await store.open()
    except DatabaseMissing as missing:
        await store.close()
        raise click.ClickException(_no_database(settings, missing)) from None
    except BaseException:
        await store.close()
        raise
    click.echo(f"database: {store.describe()}", err=True)
    return store


def _no_database(settings: Settings, missing: DatabaseMissing) -> str:
    return (
        f"no gemgate database at {missing.path} (the data folder is GEMGATE_DATA_DIR="
        f"{settings.data_dir}; GEMGATE_DATABASE_URL points to another database); "
        f"run gemgate db migrate (or gemgate serve) to create it"
    )


def _with_store(func: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async command body with an open store; gateway errors become clean CLI errors."""

    @wraps(func)
    @click.pass_context
    def wrapper(ctx: click.Context, **kwargs: Any) -> T:
        async def run() -> T:
            settings = _settings(ctx)
            store = await _open_store(settings)
            try:
                before = await store.revision()
                result = await func(store, **kwargs)
                if settings.redis_url and await store.revision() != before:
                    from gemgate.store.redis_state import announce_once

                    # Running instances apply the change now, not at their next reload.
                    await announce_once(
                        settings.redis_url, settings.redis_namespace, {"type": "reload"}
                    )
                return result
            finally:
                await store.close()

        try:
            return asyncio.run(run())
        except GatewayError as error:
            raise click.ClickException(error.message) from None

    return wrapper


# -- serve ------------------------------------------------------------------------------------


@main.command()
# GEMGATE_HOST and GEMGATE_PORT are read with every other setting, so a bad value is reported
# the same way (naming the variable) whether it comes from the environment or the file.
@click.option("--host", help="Address to listen on [GEMGATE_HOST, 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port to listen on [GEMGATE_PORT, 8000]."
)
@click.option(
    "--workers",
    metavar="N|auto",
    help="Server processes sharing the port; auto: one per core [GEMGATE_WORKERS, 1].",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: str | None) -> None:
    """Start the server (the default command)."""
    from gemgate.admin.auth import ensure_token, token_path

    settings = _settings(ctx, host=host, port=port, workers=workers)
    count = settings.worker_count

    async def check_store() -> str:
        # Opened once before the server starts, so a bad database URL or a missing or wrong
        # secret key is a one-line error here rather than a failed startup's traceback.
        store = Store.from_settings(settings)
        try:
            await store.open(create=True)
        finally:
            await store.close()
        return store.describe()

    try:
        where = asyncio.run(check_store())
    except GatewayError as error:
        raise click.ClickException(error.message) from None
    base = f"http://{settings.host}:{settings.port}"

    def say(text: str) -> None:
        # With JSON logs, even the banner is JSON lines, so a collector parses every line.
        if settings.log_format == "json":
            click.echo(json.dumps({"level": "info", "logger": "gemgate", "message": text}))
        else:
            click.echo(text)

    say(f"gemgate {_version()} on {base}" + (f" with {count} workers" if count > 1 else ""))
    say(f"store: {where}")
    say("add a client key with: gemgate keys create --name NAME")
    new_token = ensure_token(settings)
    say(f"admin page: {base}/admin/")
    if new_token:
        say(f"admin token (shown only now; its hash is in {token_path(settings)}):")
        say(new_token)
    elif settings.admin_token:
        say("log in with GEMGATE_ADMIN_TOKEN")
    else:
        say(
            "log in with the admin token printed on the first start "
            f"(delete {token_path(settings)} and restart for a new one)"
        )
    if count == 1:
        from gemgate import server

        server.run(settings)
        return
    # The parent only watches the workers: it never loads the app (or its memory).
    from gemgate import workers as supervisor

    if not settings.redis_url:
        say(
            f"warning: {count} workers without GEMGATE_REDIS_URL: each learns the others'"
            " cooldowns and broken credentials only through the database, and keeps its own"
            " thought-signature cache (README: Workers)"
        )
    sys.exit(supervisor.run(settings, count))


def _version() -> str:
    from gemgate import __version__

    return __version__


def _safe_url(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


# -- keys -------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Client keys: who may use this gateway, for what."""


LIMITS = ("rpm", "tpm", "quota_tokens")


class _Limit(click.ParamType):
    """A whole number of 1 or more; 0 is not "no limit", and the error says what is."""

    name = "N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < 1:
            flag = param.opts[0] if param else "--LIMIT"
            self.fail(f"a limit is 1 or more; `keys update --no-{flag[2:]}` removes it", param, ctx)
        return number


_LIMIT = _Limit()


def _scope_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--channels",
            help="Comma-separated channels: gemini,gemini_cli,gemini_official; 'all' for any.",
        ),
        click.option(
            "--models",
            help="Comma-separated model patterns, e.g. 'gemini-2.5-*'; 'all' or '*' for any.",
        ),
        click.option(
            "--endpoints",
            help="Comma-separated endpoints: chat,messages,native,images,embeddings,speech;"
            " 'all' for every one.",
        ),
        click.option("--rpm", type=_LIMIT, help="Requests per minute."),
        click.option("--tpm", type=_LIMIT, help="Tokens per minute."),
        click.option("--quota-tokens", type=_LIMIT, help="Total tokens allowed."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _scopes(channels: str | None, models: str | None, endpoints: str | None) -> dict[str, Any]:
    """The scopes given (an option left out is not in the result; 'all' gives None)."""
    given = {
        "channels": (channels, key_service.CHANNELS),
        "models": (models, None),
        "endpoints": (endpoints, key_service.ENDPOINTS),
    }
    return {
        name: key_service.parse_list(value, allowed, name)
        for name, (value, allowed) in given.items()
        if value is not None
    }


def _key_view(record: KeyRecord) -> dict[str, Any]:
    view = key_service.describe(record)
    view["created"] = _when(view.pop("created_at"))
    view["revoked"] = _when(view.pop("revoked_at"))
    return view


def _print_rows(
    rows: list[dict[str, Any]],
    as_json: bool,
    empty: str,
    line: Callable[[dict[str, Any]], str],
    header: str | None = None,
) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(empty)
    else:
        if header:
            click.echo(header)
        for row in rows:
            click.echo(line(row))


def _when(timestamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else None


@keys.command("create")
@click.option("--name", required=True, help="A name to recognise the key by.")
@_scope_options
@_with_store
async def keys_create(
    store: Store,
    name: str,
    channels: str | None,
    models: str | None,
    endpoints: str | None,
    rpm: int | None,
    tpm: int | None,
    quota_tokens: int | None,
) -> None:
    """Create a key; it is printed once, alone on the last line."""
    record, secret = await key_service.create(
        store,
        name,
        **_scopes(channels, models, endpoints),  # type: ignore[arg-type]
        rpm=rpm,
        tpm=tpm,
        quota_tokens=quota_tokens,
    )
    click.echo(f"created key {record.id} ({record.name}); it is shown only now:", err=False)
    click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_store
async def keys_list(store: Store, as_json: bool) -> None:
    """List keys (never the keys themselves, only a hint)."""

    def line(v: dict[str, Any]) -> str:
        state = f"revoked {v['revoked']}" if v["revoked"] else "active"
        return f"{v['id']:>4}  {v['name']:<24} {v['key']:<14} {state}"

    views = [_key_view(r) for r in await store.list_keys()]
    _print_rows(views, as_json, "no keys yet: gemgate keys create --name NAME", line)


@keys.command("show")
@click.argument("key")
@_with_store
async def keys_show(store: Store, key: str) -> None:
    """Show one key by id or name."""
    click.echo(json.dumps(_key_view(await key_service.find(store, key)), indent=2))


@keys.command("update")
@click.argument("key")
@_scope_options
@click.option("--no-rpm", is_flag=True, help="Remove the requests-per-minute limit.")
@click.option("--no-tpm", is_flag=True, help="Remove the tokens-per-minute limit.")
@click.option("--no-quota-tokens", is_flag=True, help="Remove the total-token quota.")
@_with_store
async def keys_update(
    store: Store,
    key: str,
    channels: str | None,
    models: str | None,
    endpoints: str | None,
    rpm: int | None,
    tpm: int | None,
    quota_tokens: int | None,
    no_rpm: bool,
    no_tpm: bool,
    no_quota_tokens: bool,
) -> None:
    """Change a key's scopes and limits (only the options given). 'all' as a scope, or a
    --no-LIMIT flag, takes the restriction away."""
    record = await key_service.find(store, key)
    changes = _scopes(channels, models, endpoints)
    for name, value, remove in zip(
        LIMITS, (rpm, tpm, quota_tokens), (no_rpm, no_tpm, no_quota_tokens), strict=True
    ):
        flag = "--" + name.replace("_", "-")
        if value is not None and remove:
            raise click.UsageError(f"{flag} and --no-{flag[2:]} contradict each other")
        if value is not None or remove:
            changes[name] = value
    if not changes:
        raise click.UsageError("nothing to change: give at least one option")
    updated = await key_service.update(store, record.id, changes)
    click.echo(json.dumps(_key_view(updated), indent=2))


@keys.command("revoke")
@click.argument("key")
@_with_store
async def keys_revoke(store: Store, key: str) -> None:
    """Revoke a key by id or name; running servers stop accepting it within seconds."""
    record = await key_service.revoke(store, key)
    click.echo(f"revoked key {record.id} ({record.name})")


# -- credentials ------------------------------------------------------------------------------


@main.group()
def credentials() -> None:
    """Upstream credentials in each channel's pool."""


@credentials.command("add", epilog="\b\n" + cookie_import.GUIDE)
@click.argument("channel", type=click.Choice(key_service.CHANNELS))
@click.argument("more_files", nargs=-1, type=click.Path())
@click.option("--api-key", help="gemini: a Gemini API key.")
@click.option("--psid", help="gemini_official: the __Secure-1PSID cookie.")
@click.option("--psidts", help="gemini_official: the __Secure-1PSIDTS cookie.")
@click.option(
    "--cookies",
    help="gemini_official: a Cookie header, a Netscape cookies.txt or a cookie-extension JSON "
    "export, as a file path or - for standard input.",
)
@click.option(
    "--oauth-file",
    "oauth_files",
    multiple=True,
    type=click.Path(),
    help="gemini_cli: gemini-cli's oauth_creds.json; more files or folders may follow.",
)
@click.option("--project", help="gemini_cli: the Google Cloud project with a Code Assist licence.")
@click.option("--no-check", is_flag=True, help="gemini_cli: do not ask Google about the account.")
@click.option("--label", help="A name to recognise the credential by.")
@click.option(
    "--proxy", help="Outbound proxy URL for this credential (http://, https:// or socks5://)."
)
@_with_store
async def credentials_add(
    store: Store,
    channel: str,
    more_files: tuple[str, ...],
    api_key: str | None,
    oauth_files: tuple[str, ...],
    project: str | None,
    no_check: bool,
    psid: str | None,
    psidts: str | None,
    cookies: str | None,
    label: str | None,
    proxy: str | None,
) -> None:
    """Add a credential to a channel's pool."""
    proxy = credential_service.checked_proxy(proxy)
    if channel == "gemini_official":
        record = await cookie_import.add_gemini_official(
            store,
            psid=psid,
            psidts=psidts,
            cookies_text=_read_text(cookies) if cookies is not None else None,
            label=label,
            proxy=proxy,
        )
        click.echo(f"added credential {record.id} ({record.label}) to {record.channel}")
        return
    if channel == "gemini_cli":
        from gemgate.services import oauth_import

        if api_key:
            raise click.UsageError("gemini_cli takes --oauth-file, not --api-key")

        settings = _settings(click.get_current_context())
        for line in await oauth_import.add_files(
            store,
            settings,
            [*oauth_files, *more_files],
            label=label,
            proxy=proxy,
            project=project,
            verify=not no_check,
        ):
            click.echo(line)
        return
    if channel != "gemini":
        raise click.ClickException(f"the {channel} channel is not available in this version yet")
    if not api_key or more_files:
        raise click.UsageError("gemini needs --api-key KEY (and nothing else)")
    record = await credential_service.add_gemini(store, api_key, label=label, proxy=proxy)
    click.echo(f"added credential {record.id} ({record.label}) to {record.channel}")


def _read_text(source: str) -> str:
    """A value given as a file path, `-` (standard input) or the text itself."""
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    try:
        if len(source) < 4096 and path.is_file():
            return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror}") from None
    return source


@credentials.command("list")
@click.option("--channel", type=click.Choice(key_service.CHANNELS))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quota", is_flag=True, help="gemini_cli: ask Google for each account's quota.")
@_with_store
async def credentials_list(
    store: Store, channel: str | None, as_json: bool, quota: bool
) -> None:
    """List credentials, secrets masked, with why any is broken."""

    def line(v: dict[str, Any]) -> str:
        state = "enabled" if v["enabled"] else "disabled"
        if v["status"] != "ok":
            state += f", {v['status']}: {v['status_reason']}"
        secret = ", ".join(f"{k}={s}" for k, s in v["secret"].items())
        text = f"{v['id']:>4}  {v['channel']:<16} {v['label']:<24} {secret}  [{state}]"
        return "\n".join([text, *_cooldown_lines(v), *_quota_lines(v)])

    cooldowns = await store.cooldowns()
    records = await store.list_credentials(channel)
    views = [credential_service.describe(r, cooldowns) for r in records]
    if quota:
        from gemgate.services import oauth_import

        settings = _settings(click.get_current_context())
        for view, record in zip(views, records, strict=True):
            if record.channel == "gemini_cli" and record.status == "ok" and record.enabled:
                # Google's quota calls are paced by the operator, never polled in the background.
                view["quota"] = await oauth_import.quota(store, settings, record)
    empty = "no credentials yet: gemgate credentials add gemini --api-key KEY"
    _print_rows([_json_times(v) for v in views] if as_json else views, as_json, empty, line)


def _quota_lines(view: dict[str, Any]) -> list[str]:
    if "quota" not in view:
        return []
    said = [q["error"] for q in view["quota"] if "error" in q] + [
        f"{q['model']} {q['left']} until {q['resets']}"
        for q in view["quota"]
        if q.get("left") not in (None, "100%") and "error" not in q
    ]
    return [f"        quota: {'; '.join(said) or 'every model 100%'}"]


def _cooldown_lines(view: dict[str, Any]) -> list[str]:
    now = time.time()
    return [
        f"        cooling down for {c['model']} until {_when(c['until'])} "
        f"({c['until'] - now:.0f}s left){': ' + c['reason'] if c['reason'] else ''}"
        for c in view["cooldowns"]
    ]


def _json_times(view: dict[str, Any]) -> dict[str, Any]:
    view["cooldowns"] = [
        {**c, "since": _iso(c["since"]), "until": _iso(c["until"])} for c in view["cooldowns"]
    ]
    return view


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@credentials.command("show")
@click.argument("credential")
@_with_store
async def credentials_show(store: Store, credential: str) -> None:
    """Show one credential by id or label, secrets masked, with its cooldowns (and, for
    gemini_cli, each model's quota left, asked of Google)."""
    record = await credential_service.find(store, credential)
    view = credential_service.describe(record, await store.cooldowns())
    if record.channel == "gemini_cli":
        from gemgate.services import oauth_import

        settings = _settings(click.get_current_context())
        view["quota"] = await oauth_import.quota(store, settings, record)
    click.echo(json.dumps(_json_times(view), indent=2))


@credentials.command("enable")
@click.argument("credential")
@_with_store
async def credentials_enable(store: Store, credential: str) -> None:
    """Enable a credential, by id or label (and clear its invalid mark)."""
    record = await credential_service.find(store, credential)
    record = await credential_service.set_enabled(store, record.id, True)
    click.echo(f"enabled credential {record.id} ({record.label})")


@credentials.command("disable")
@click.argument("credential")
@_with_store
async def credentials_disable(store: Store, credential: str) -> None:
    """Disable a credential, by id or label; it stays stored but is never used."""
    record = await credential_service.find(store, credential)
    record = await credential_service.set_enabled(store, record.id, False)
    click.echo(f"disabled credential {record.id} ({record.label})")


@credentials.command("remove")
@click.argument("credential")
@_with_store
async def credentials_remove(store: Store, credential: str) -> None:
    """Remove a credential, by id or label, for good (its id is never given again)."""
    record = await credential_service.find(store, credential)
    await store.remove_credential(record.id)
    click.echo(f"removed credential {record.id} ({record.label})")


@credentials.command("test")
@click.argument("credential")
@click.pass_context
def credentials_test(ctx: click.Context, credential: str) -> None:
    """Ask the upstream whether a credential (id or label) works, and say why not."""
    from gemgate.gateway import Gateway

    async def run() -> credential_service.TestResult:
        settings = _settings(ctx)
        gateway = Gateway(settings)
        try:
            await _open_store(settings, gateway.store)
        except BaseException:
            await gateway.http.close()
            raise
        try:
            return await credential_service.test(gateway.store, gateway.channels, credential)
        finally:
            await gateway.http.close()
            await gateway.store.close()

    try:
        result = asyncio.run(run())
    except GatewayError as error:
        raise click.ClickException(error.message) from None
    if not result.ok:
        raise click.ClickException(result.message)
    click.echo(result.message)


# -- login ------------------------------------------------------------------------------------


@main.command()
@click.argument("channel", type=click.Choice(["gemini_cli"]))
@click.option("--no-browser", is_flag=True, help="Paste the code Google shows (PKCE).")
@click.option("--port", type=int, default=0, help="Loopback port for the browser's return.")
@click.option("--project", help="The Google Cloud project with a Code Assist licence.")
@click.option("--no-check", is_flag=True, help="Do not ask Google about the account.")
@click.option("--label", help="A name to recognise the credential by.")
@click.option("--proxy", help="Outbound proxy URL for this credential.")
@_with_store
async def login(
    store: Store,
    channel: str,
    no_browser: bool,
    port: int,
    project: str | None,
    no_check: bool,
    label: str | None,
    proxy: str | None,
) -> None:
    """Sign a Google account in with Gemini CLI's OAuth client and add it to the pool."""
    from gemgate.services import oauth_import

    proxy = credential_service.checked_proxy(proxy)  # before the browser, not after

    def announce(url: str) -> None:
        click.echo("Open this URL in a browser and sign in:")
        click.echo(url)
        if not no_browser and sys.stdout.isatty():
            import webbrowser

            webbrowser.open(url)

    async def read_code() -> str:
        return str(await asyncio.to_thread(click.prompt, "Paste the code Google shows"))

    for line in await oauth_import.login(
        store,
        _settings(click.get_current_context()),
        announce=announce,
        read_code=read_code if no_browser else None,
        port=port,
        label=label,
        proxy=proxy,
        project=project,
        verify=not no_check,
    ):
        click.echo(line)


# -- usage ------------------------------------------------------------------------------------


@main.command()
@click.option("--key", "key_ident", help="Only this key (id or name).")
@click.option("--since", help="Only the last period: 30m, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_with_store
async def usage(store: Store, key_ident: str | None, since: str | None, as_json: bool) -> None:
    """Requests and tokens per key, channel and model."""
    key_id = (await key_service.find(store, key_ident)).id if key_ident else None
    start = time.time() - _period(since) if since else None
    rows = await store.usage_report(key_id, start)
    names = {k.id: k.name for k in await store.list_keys()}
    for row in rows:
        row["key"] = names.get(row.pop("key_id"), "(deleted)")

    def line(r: dict[str, Any]) -> str:
        return (
            f"{r['key']:<20} {r['channel']:<16} {r['model']:<28} {r['requests']:>8} "
            f"{r['errors']:>6} {r['prompt_tokens']:>10} {r['output_tokens']:>10} "
            f"{r['thought_tokens']:>10} {r['total_tokens']:>10}"
        )

    header = (
        f"{'KEY':<20} {'CHANNEL':<16} {'MODEL':<28} {'REQUESTS':>8} {'ERRORS':>6} "
        f"{'PROMPT':>10} {'OUTPUT':>10} {'THINKING':>10} {'TOTAL':>10}"
    )
    _print_rows(rows, as_json, "no usage recorded yet", line, header)


def _period(text: str) -> float:
    units = {"m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise click.BadParameter("use a number and m, h or d: 30m, 24h, 7d", param_hint="--since")
    return int(text[:-1]) * units[text[-1]]


# -- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The store."""


@db.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Create the database, or bring its schema up to date (serve does this too)."""
    settings = _settings(ctx)

    async def run() -> str:
        store = Store.from_settings(settings)
        existed = store.path is None or store.path.exists()
        try:
            await store.open(create=True)
        finally:
            await store.close()
        return f"{store.describe()} is up to date" if existed else f"created {store.describe()}"

    try:
        click.echo(asyncio.run(run()))
    except GatewayError as error:
        raise click.ClickException(error.message) from None


@db.command("check")
@click.pass_context
def db_check(ctx: click.Context) -> None:
    """Check that the database (and Redis, when set) answer and the schema is current; exit 1
    when something needs doing."""
    settings = _settings(ctx)

    async def run() -> list[str]:
        problems = []
        store = Store.from_settings(settings)
        try:
            if store.path is not None and not store.path.exists():
                # Looking must not create it (SQLite would, on connecting).
                problems.append(_no_database(settings, DatabaseMissing(store.path)))
            else:
                missing = await store.pending_migrations()
                if missing:
                    problems.append(
                        f"database {store.describe()} lacks migrations "
                        f"{', '.join(map(str, missing))}: run gemgate db migrate"
                    )
                else:
                    click.echo(f"database {store.describe()}: schema up to date")
        except Exception as exc:
            problems.append(f"database {store.describe()} does not answer: {exc}")
        finally:
            await store.close()
        if settings.redis_url:
            from gemgate.store.redis_state import redis_answers

            if await redis_answers(settings.redis_url):
                click.echo(f"redis {_safe_url(settings.redis_url)}: answers")
            else:
                problems.append(f"redis {_safe_url(settings.redis_url)} does not answer")
        return problems

    problems = asyncio.run(run())
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)


_config_on_every_command(main)

if __name__ == "__main__":
    sys.exit(main())
