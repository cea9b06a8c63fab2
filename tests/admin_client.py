"""A plain HTTP client for the admin API and /metrics (urllib, so no test depends on an HTTP
library the gateway does not use)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode


@dataclass
class Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def fetch(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.read().decode())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode())


class AdminClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"authorization": f"Bearer {token}"}

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        url = self.base_url + path + ("?" + urlencode(params) if params else "")
        headers = dict(self.headers)
        if json_body is not None:
            content = json.dumps(json_body).encode()
        if content is not None:
            headers["content-type"] = "application/json"
        return fetch(url, method, content, headers)

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Answer:
        return self.request("POST", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None) -> Answer:
        return self.request("PATCH", path, json_body)

    def delete(self, path: str) -> Answer:
        return self.request("DELETE", path)
