"""The snapshot stream (Server-Sent Events) as the client reads it, over http.client.

The snapshot's `Link: <URL>; rel="stream"` names the stream; the client follows it only to the
host of its base URL (same scheme and host name, any port), so the key never goes elsewhere.
"""

import http.client
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?stream"?(?:\s*;|\s*,|\s*$)')


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of the stream; a comment (a keepalive) has event "" and its text as data."""

    event: str
    id: str | None
    data: str


def stream_url(link_header: str | None, base_url: str) -> str | None:
    """The stream's URL from a Link header, when it is on the same scheme and host as `base_url`."""
    if not link_header:
        return None
    found = LINK.search(link_header)
    if found is None:
        return None
    url: str = urljoin(base_url, found.group(1).strip())
    base, target = urlsplit(base_url), urlsplit(url)
    if (target.scheme, target.hostname) != (base.scheme, base.hostname):
        return None
    return url


def parse_events(lines: Iterable[str]) -> Iterator[StreamEvent]:
    """Events of an SSE stream from its lines (without line ends), comments included."""
    event, event_id, data = "", None, list[str]()
    for line in lines:
        if not line:
            if data:
                yield StreamEvent(event or "message", event_id, "\n".join(data))
            event, event_id, data = "", None, []
        elif line.startswith(":"):
            yield StreamEvent("", None, line[1:].strip())
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id" and "\0" not in value:
                event_id = value


class EventStream:
    """One open stream; `events()` yields until the server ends it or the connection fails
    (one of NETWORK_ERRORS). `close()` from another thread ends it."""

    def __init__(self, url: str, headers: dict[str, str], *, connect_timeout: float, read_timeout: float):
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        connection = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        self._connection = connection(parts.netloc, timeout=connect_timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._connection.request("GET", path, headers=headers | {"Accept": "text/event-stream"})
        self._response = self._connection.getresponse()
        self.status = self._response.status
        if self._connection.sock is not None:
            self._connection.sock.settimeout(read_timeout)

    def events(self) -> Iterator[StreamEvent]:
        return parse_events(self._lines())

    def _lines(self) -> Iterator[str]:
        while True:
            line = self._response.readline()
            if not line:
                return
            yield line.decode().rstrip("\r\n")

    def close(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side
        self._connection.close()
