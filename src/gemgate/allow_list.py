"""Which private hosts the operator lets gemgate fetch client-given URLs from
(`GEMGATE_FETCH_ALLOW_HOSTS`), by host and port. Kept free of I/O so settings can check it."""

from __future__ import annotations

_STANDARD_PORTS = (80, 443)


class AllowList:
    """The operator's `GEMGATE_FETCH_ALLOW_HOSTS`: `host:port` entries allow that port only,
    a bare host its standard ports (80 and 443) only, so allow-listing a web server does not
    open every other service on the same machine. IPv6 addresses go in brackets with a port."""

    def __init__(self, setting: str) -> None:
        self.entries: set[tuple[str, int | None]] = set()
        for raw in setting.split(","):
            entry = raw.strip().lower()
            if entry:
                self.entries.add(_host_and_port(entry))

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        if (host, port) in self.entries:
            return True
        return port in _STANDARD_PORTS and (host, None) in self.entries


def _host_and_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""  # a name, an IPv4 address or a bare IPv6 address
    if port and not port.isdigit():
        raise ValueError(f"the port of {entry!r} is not a number")
    return host, int(port) if port else None
