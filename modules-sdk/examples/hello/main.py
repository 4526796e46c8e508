#!/usr/bin/env python3
"""hello: the example modcore module (Python standard library only).

Serves on 127.0.0.1:<port>:
  GET /health                               {"status": "ok", "name", "version"}
  GET /hello                                {"message", "core_self"}
  GET /widget.html, /settings.html, /icon.svg   its UI files
At start it asks the core who it is (GET <core>/modules/self) in the background,
so /health answers at once. SIGTERM or SIGINT stops it cleanly.
"""
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "manifest.json"), encoding="utf-8") as manifest_file:
    MANIFEST = json.load(manifest_file)

NAME = os.environ.get("SELENA_MODULE_NAME") or MANIFEST["name"]
VERSION = MANIFEST["version"]
PORT = int(os.environ.get("SELENA_MODULE_PORT") or MANIFEST["port"])
CORE_URL = (os.environ.get("SELENA_CORE_URL") or os.environ.get("SELENA_CORE_API")
            or "http://127.0.0.1:7070/api/v1").rstrip("/")
TOKEN = os.environ.get("SELENA_MODULE_TOKEN") or os.environ.get("MODULE_TOKEN") or ""

STATIC_FILES = {
    "/widget.html": "text/html; charset=utf-8",
    "/settings.html": "text/html; charset=utf-8",
    "/icon.svg": "image/svg+xml",
}

# The core's record of this module, set once by the background thread.
core_self = None

# The core is local: never send its token through an http_proxy from the environment.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(text):
    print(f"{NAME}: {text}", flush=True)


def retry_delay(retry_after, default):
    """Seconds to wait before retrying: the core's Retry-After if it is usable."""
    try:
        return min(max(float(retry_after), 0.1), 30.0)
    except (TypeError, ValueError):
        return default


def ask_core_who_i_am(attempts=5):
    """GET <core>/modules/self with the module token and keep the record in core_self.
    Retries on connection errors and 429; logs the outcome in one line."""
    global core_self
    if not TOKEN:
        log("no SELENA_MODULE_TOKEN set, not asking the core who I am")
        return
    request = urllib.request.Request(
        CORE_URL + "/modules/self",
        headers={"Authorization": "Bearer " + TOKEN, "Accept": "application/json"})
    delay = 0.5
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        try:
            with opener.open(request, timeout=5) as response:
                record = json.load(response)
            core_self = record
            log(f"core knows me as {record.get('name')} ({record.get('status')})")
            return
        except urllib.error.HTTPError as error:
            if error.code != 429 or last:
                detail = error.read(2000).decode("utf-8", "replace").strip()
                log(f"core answered HTTP {error.code} to GET /modules/self: {detail}")
                return
            wait = retry_delay(error.headers.get("Retry-After"), delay)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if last:
                log(f"cannot reach the core at {CORE_URL}: {reason}")
                return
            wait = delay
        except ValueError as error:
            log(f"the core's answer to GET /modules/self is not JSON: {error}")
            return
        time.sleep(wait)
        delay = min(delay * 2, 8.0)


class Handler(BaseHTTPRequestHandler):
    server_version = f"{NAME}/{VERSION}"

    def log_message(self, format, *args):
        pass  # one line per request would drown the module's own log

    def send_body(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, value):
        self.send_body(status, json.dumps(value).encode(), "application/json")

    def do_GET(self):
        path = self.path.split("?", 1)[0]  # widget.html is loaded with ?ui_token=...
        if path == "/health":
            self.send_json(200, {"status": "ok", "name": NAME, "version": VERSION})
        elif path == "/hello":
            self.send_json(200, {"message": f"hello from {NAME}", "core_self": core_self})
        elif path in STATIC_FILES:
            with open(os.path.join(HERE, path.lstrip("/")), "rb") as static_file:
                self.send_body(200, static_file.read(), STATIC_FILES[path])
        else:
            self.not_found()

    def not_found(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 1 << 20))  # read the body so the answer is not reset
        path = self.path.split("?", 1)[0]
        self.send_json(404, {"error": "NOT_FOUND", "detail": f"no such path: {path}"})

    do_POST = do_PUT = do_PATCH = do_DELETE = not_found


def main():
    try:
        server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    except OSError as error:
        log(f"cannot listen on 127.0.0.1:{PORT}: {error.strerror}")
        return 1

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"version {VERSION} listening on 127.0.0.1:{PORT}, core at {CORE_URL}")
    threading.Thread(target=ask_core_who_i_am, daemon=True).start()
    server.serve_forever()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
