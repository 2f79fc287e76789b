"""The HTTP calls the client makes, over the standard library (urllib, http.client)."""

import email.message
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from .stream import EventStream

NETWORK_ERRORS = (OSError, http.client.HTTPException)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: email.message.Message
    body: bytes


class _KeyStaysHome(urllib.request.HTTPRedirectHandler):
    """Follows a redirect, without the API key when it leads to another scheme, host or port."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None and _origin(newurl) != _origin(req.full_url):
            follow.remove_header("Authorization")
        return follow


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class Transport:
    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_KeyStaysHome)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "promptramp-python",
        }

    def get_snapshot(self, etag: str | None, timeout: float | None = None) -> Reply:
        """GET /api/v1/snapshot, revalidating `etag` (a 304 then means it is still current)."""
        headers = {"If-None-Match": etag} if etag else {}
        return self._send("GET", "/api/v1/snapshot", headers, None, timeout)

    def open_stream(self, url: str, last_event_id: str | None, read_timeout: float) -> EventStream:
        """GET the snapshot stream at `url` (on the base URL's host), resuming after `last_event_id`."""
        headers = self._headers | ({"Last-Event-ID": last_event_id} if last_event_id else {})
        return EventStream(url, headers, connect_timeout=self.timeout, read_timeout=read_timeout)

    def post_events(
        self, events: list[dict[str, Any]], *, batch_id: str, exposures: list[dict[str, Any]]
    ) -> Reply:
        """POST /api/v1/events with one batch (its exposures counted once per ``batch_id``)."""
        batch: dict[str, Any] = {"batch_id": batch_id, "events": events}
        if exposures:
            batch["exposures"] = exposures
        body = json.dumps(batch, separators=(",", ":")).encode()
        return self._send("POST", "/api/v1/events", {"Content-Type": "application/json"}, body)

    def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> Reply:
        """The server's reply, whatever its status; raises one of NETWORK_ERRORS without one."""
        request = urllib.request.Request(
            self.base_url + path, data=body, headers=self._headers | headers, method=method
        )
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, error.headers, error.read())
