"""The module's own HTTP server: requests, responses, and the threaded server.

Responses go out in ONE write (status line, headers and body together): with
separate writes, Nagle's algorithm and delayed ACKs stall every keep-alive request
by ~40 ms. Connections are HTTP/1.1 keep-alive, one thread each."""

import json
import logging
import socket
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 * 1024 * 1024

_REASONS = BaseHTTPRequestHandler.responses


class HttpError(Exception):
    """Raise from a route to answer status with {"error": code, "detail": detail}."""

    def __init__(self, status, code, detail=""):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class Request:
    """One request to the module. method, path (no query), query (dict: first value of
    each name), query_all (dict of lists), headers (case-insensitive), body (bytes),
    params (the {name} segments of the route), client (address)."""

    def __init__(self, method, path, query_string, headers, body, client=None):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.query_all = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        self.query = {k: v[0] for k, v in self.query_all.items()}
        self.headers = headers
        self.body = body
        self.params = {}
        self.client = client

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body as JSON; raises HttpError 400 if it is not."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError as e:
            raise HttpError(400, "BAD_JSON", f"the body is not JSON: {e}") from None


class Response:
    """A full answer: status, body (bytes or str), content type, extra headers."""

    def __init__(self, body=b"", status=200, content_type="application/octet-stream",
                 headers=None):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, value, status=200, headers=None):
        return cls(json.dumps(value).encode(), status, "application/json", headers)

    @classmethod
    def error(cls, status, code, detail=""):
        return cls.json({"error": code, "detail": detail}, status)


def to_response(value):
    """What a route returned -> Response. dict/list/number/bool: JSON 200; str:
    text/plain; bytes: octet-stream; None: 204; (status, value[, headers]): that
    status; a Response as is."""
    if isinstance(value, Response):
        return value
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        status, inner = value[0], value[1] if len(value) > 1 else None
        response = to_response(inner)
        response.status = status
        if len(value) > 2 and value[2]:
            response.headers.update(value[2])
        return response
    if value is None:
        return Response(b"", 204)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Response(bytes(value))
    if isinstance(value, str):
        return Response(value, 200, "text/plain; charset=utf-8")
    return Response.json(value)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection is closed after this
    app = None  # set by Server: has .handle(Request) -> Response

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format, *args):
        pass  # a line per request would drown the module's own log

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise HttpError(413, "TOO_LARGE", f"bodies are limited to {MAX_BODY} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "BAD_LENGTH", "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY:
            raise HttpError(413, "TOO_LARGE", f"bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _send(self, response, head_only=False):
        reason = _REASONS.get(response.status, ("",))[0]
        lines = [f"HTTP/1.1 {response.status} {reason}",
                 f"Server: {self.app.server_name}",
                 f"Content-Type: {response.content_type}",
                 f"Content-Length: {len(response.body)}"]
        for k, v in response.headers.items():
            lines.append(f"{k}: {v}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if head_only else head + response.body)  # one write

    def _serve(self):
        path, _, query = self.path.partition("?")
        try:
            try:
                body = self._read_body()
            except HttpError:
                self.close_connection = True  # the rest of the body is still unread
                raise
            request = Request(self.command, urllib.parse.unquote(path), query, self.headers,
                              body, self.client_address)
            response = self.app.handle(request)
        except HttpError as e:
            response = Response.error(e.status, e.code, e.detail)
        except (ValueError, OSError) as e:
            self.close_connection = True
            response = Response.error(400, "BAD_REQUEST", str(e))
        except Exception as e:  # a bug: answer rather than drop the connection
            logging.getLogger("modcore_sdk").exception("%s %s", self.command, path)
            response = Response.error(500, "INTERNAL", f"{type(e).__name__}: {e}")
        self._send(response, head_only=self.command == "HEAD")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer serving app (an object with .handle(Request) and
    .server_name); daemon threads, so a stop does not wait for idle connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, app):
        handler = type("Handler", (_Handler,), {"app": app})
        super().__init__(address, handler)
