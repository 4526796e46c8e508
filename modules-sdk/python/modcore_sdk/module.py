"""Module: everything a modcore module needs, built from the environment the core gives.

    from modcore_sdk import Module
    module = Module()

    @module.on_event("device.*")
    def changed(event):
        print(event.type, event.payload)

    module.run()

run() binds 127.0.0.1:<SELENA_MODULE_PORT>, serves /health, /webhook/events, /cli,
the UI files and the module's routes, then (in the background, so /health answers at
once) subscribes to every @on_event pattern and registers the CLI spec, retrying until
the core accepts; then it blocks until SIGTERM or SIGINT."""

import collections
import json
import logging
import mimetypes
import os
import re
import signal
import sys
import threading
import traceback

from . import __version__
from .cli import Command, invoke
from .client import ApiClient, ApiError
from .patterns import match, pattern_valid
from .server import HttpError, Response, Server, to_response
from .signing import verify_request

WEBHOOK_PATH = "/webhook/events"
CLI_PATH = "/cli"
RESERVED = {"/health", WEBHOOK_PATH, CLI_PATH}
DEFAULT_UI_FILES = ("widget.html", "settings.html", "icon.svg")
MAX_PATTERNS_PER_SUBSCRIPTION = 32  # the core's limit

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".svg": "image/svg+xml", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8", ".woff2": "font/woff2",
}


def content_type(path):
    ext = os.path.splitext(path)[1].lower()
    return (_CONTENT_TYPES.get(ext) or mimetypes.guess_type(path)[0]
            or "application/octet-stream")


class Event(dict):
    """A delivered event: the event's JSON object, with attributes id, type, source,
    timestamp, payload, plus attempt (the delivery attempt, 1 = first) and headers."""

    attempt = 1
    headers = None

    id = property(lambda self: self.get("id"))
    type = property(lambda self: self.get("type"))
    source = property(lambda self: self.get("source"))
    timestamp = property(lambda self: self.get("timestamp"))
    payload = property(lambda self: self.get("payload") or {})


class _Deduper:
    """The ids of the last `size` events handled successfully. The core delivers at
    least once; a redelivery of a handled event is answered 200 without running the
    handlers again. A delivery of an event whose handlers are running waits for them."""

    def __init__(self, size):
        self.size = size
        self._lock = threading.Lock()
        self._done = collections.OrderedDict()
        self._busy = {}

    def begin(self, event_id, wait=30.0):
        """True: run the handlers. False: already handled. None: still running
        elsewhere after `wait` seconds."""
        while True:
            with self._lock:
                if event_id in self._done:
                    self._done.move_to_end(event_id)
                    return False
                busy = self._busy.get(event_id)
                if busy is None:
                    self._busy[event_id] = threading.Event()
                    return True
            if not busy.wait(wait):
                return None

    def finish(self, event_id, ok):
        with self._lock:
            busy = self._busy.pop(event_id, None)
            if ok:
                self._done[event_id] = True
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
        if busy:
            busy.set()


class _Route:
    def __init__(self, method, path, handler):
        self.method = method.upper()
        self.path = path
        self.handler = handler
        parts = []
        for seg in path.strip("/").split("/"):
            m = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", seg)
            parts.append(f"(?P<{m.group(1)}>[^/]+)" if m else re.escape(seg))
        self.regex = re.compile("^/" + "/".join(parts) + "$")


class Module:
    """A modcore module. Every argument defaults to the environment the core sets:

    token:        SELENA_MODULE_TOKEN, else MODULE_TOKEN
    webhook_secret / standard_webhook_secret:
                  SELENA_WEBHOOK_SECRET / MODCORE_STANDARD_WEBHOOK_SECRET
    core_url:     SELENA_CORE_URL, else SELENA_CORE_API, else http://127.0.0.1:7070/api/v1
    name, port:   SELENA_MODULE_NAME, SELENA_MODULE_PORT, else the manifest's
    install_path: SELENA_INSTALL_PATH, else the main script's dir, else the current dir
    version, about (CLI description), UI files: from <install_path>/manifest.json."""

    def __init__(self, name=None, version=None, *, port=None, host="127.0.0.1",
                 core_url=None, token=None, webhook_secret=None,
                 standard_webhook_secret=None, install_path=None, manifest=None,
                 about=None, env=None, dedupe_size=1024, log_level=logging.INFO):
        env = os.environ if env is None else env
        self.install_path = os.path.abspath(install_path or env.get("SELENA_INSTALL_PATH")
                                            or _main_dir() or os.getcwd())
        self.manifest = manifest if manifest is not None else self._read_manifest()
        self.name = (name or env.get("SELENA_MODULE_NAME") or self.manifest.get("name")
                     or "module")
        self.version = version or self.manifest.get("version") or "0.0.0"
        self.about = about or self.manifest.get("description") or ""
        port = port if port is not None else (env.get("SELENA_MODULE_PORT")
                                              or self.manifest.get("port") or 0)
        self.port = int(port)
        self.host = host
        self.core_url = (core_url or env.get("SELENA_CORE_URL") or env.get("SELENA_CORE_API")
                         or "http://127.0.0.1:7070/api/v1").rstrip("/")
        self.log = logging.getLogger(self.name)
        self.log_level = log_level
        self.api = ApiClient(self.core_url,
                             token or env.get("SELENA_MODULE_TOKEN") or env.get("MODULE_TOKEN"),
                             self.name)
        self.__secret = webhook_secret or env.get("SELENA_WEBHOOK_SECRET") or ""
        self.__standard_secret = (standard_webhook_secret
                                  or env.get("MODCORE_STANDARD_WEBHOOK_SECRET") or "")
        self.server_name = f"{self.name}/{self.version} modcore_sdk/{__version__}"
        self._handlers = []  # (patterns, fn)
        self._routes = []
        self._commands = collections.OrderedDict()
        self._on_start = []
        self._on_stop = []
        self._health_check = None
        self._static = self._ui_files()
        self._dedupe = _Deduper(dedupe_size)
        self._server = None
        self._threads = []
        self._stopping = threading.Event()
        self._stopped = False
        self._warned = set()
        self.subscriptions = []  # the core's answers to our subscribe calls
        self.subscribed = threading.Event()  # set once every pattern is subscribed
        self.cli_registered = threading.Event()  # set once the CLI spec is registered
        self.started = threading.Event()  # set once the start-up work is done

    def __repr__(self):
        return f"<Module {self.name} {self.version} port={self.port}>"

    # --- decorators ------------------------------------------------------------------
    def on_event(self, *patterns):
        """@module.on_event("device.*", "automation.triggered"): fn(event) runs for each
        delivered event whose type matches (exact, "prefix.*" or "*"). It runs before
        the core gets its 200; an exception answers 500, so the core delivers again."""
        if not patterns:
            raise ValueError("on_event needs at least one pattern")
        for p in patterns:
            if not pattern_valid(p):
                raise ValueError(f"invalid event pattern {p!r}: use a type like "
                                 f"'device.state_changed', 'device.*' or '*'")

        def decorate(fn):
            self._handlers.append((tuple(patterns), fn))
            return fn
        return decorate

    def route(self, method, path):
        """@module.route("GET", "/hello"): fn(request) -> dict/list (JSON), str (text),
        bytes, None (204), (status, value[, headers]) or a Response. Path segments
        "{name}" match one segment, given in request.params."""
        if not path.startswith("/"):
            raise ValueError("a route path starts with /")
        if path in RESERVED:
            raise ValueError(f"{path} is served by the SDK itself")

        def decorate(fn):
            self._routes.append(_Route(method, path, fn))
            return fn
        return decorate

    def cli_command(self, name, about="", args=()):
        """@module.cli_command("greet", about="...", args=[Arg("name", ...)]):
        fn(**args) runs when the operator invokes the subcommand; what it prints is
        its output, its int return value (default 0) its exit code."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
            raise ValueError(f"invalid CLI command name {name!r}")

        def decorate(fn):
            self._commands[name] = Command(name, fn, about, args)
            return fn
        return decorate

    def on_start(self, fn):
        """@module.on_start: fn() runs in the background once the server listens."""
        self._on_start.append(fn)
        return fn

    def on_stop(self, fn):
        """@module.on_stop: fn() runs when the module stops."""
        self._on_stop.append(fn)
        return fn

    def health_check(self, fn):
        """@module.health_check: fn() -> dict of extra /health fields; raising makes
        /health answer 503."""
        self._health_check = fn
        return fn

    def static(self, url_path, file_path=None):
        """Serves a file of the install dir at url_path (GET)."""
        rel = file_path or url_path.lstrip("/")
        safe = _safe_rel(rel)
        if safe is None:
            raise ValueError(f"{rel!r} is not a path inside the module's directory")
        self._static["/" + url_path.lstrip("/")] = safe

    @property
    def webhook_url(self):
        return f"http://localhost:{self.port}{WEBHOOK_PATH}"

    @property
    def patterns(self):
        """Every @on_event pattern, once each, in declaration order."""
        seen = []
        for patterns, _ in self._handlers:
            for p in patterns:
                if p not in seen:
                    seen.append(p)
        return seen

    def cli_spec(self):
        """The RegisterCliSpec sent to the core."""
        return {"name": self.name, "about": self.about,
                "subcommands": [c.spec() for c in self._commands.values()]}

    # --- running -----------------------------------------------------------------------
    def start(self):
        """Binds and serves in a background thread, then does the start-up work
        (subscribe, register the CLI spec, on_start hooks) in other threads."""
        try:
            self._server = Server((self.host, self.port), self)
        except OSError as e:
            raise RuntimeError(f"{self.name}: cannot listen on {self.host}:{self.port}: "
                               f"{e.strerror or e}") from None
        self.port = self._server.server_address[1]
        self.log.info("%s listening on %s:%d, core at %s", self.server_name, self.host,
                      self.port, self.core_url)
        self._spawn(self._server.serve_forever, "http")
        self._spawn(self._startup, "startup")
        if self._on_start:
            self._spawn(self._run_hooks, "on_start", self._on_start, "on_start")
        return self

    def stop(self):
        """Stops serving and runs the on_stop hooks (idempotent)."""
        self._stopping.set()
        if self._stopped:
            return
        self._stopped = True
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        self._run_hooks(self._on_stop, "on_stop")
        self.log.info("stopped")

    def run(self):
        """start(), then block until SIGTERM/SIGINT (or stop()), then stop cleanly."""
        if not logging.getLogger().handlers:
            logging.basicConfig(level=self.log_level, stream=sys.stderr,
                                format="%(asctime)s %(name)s %(levelname)s %(message)s")
        main = threading.current_thread() is threading.main_thread()
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        if main:
            for sig in stop_signals:
                signal.signal(sig, lambda signum, frame: self._stopping.set())
            # The threads started below inherit a mask that blocks these, so the kernel
            # delivers them to this thread and they cut its wait short. Delivered to
            # another thread, they would be seen only when the wait times out (up to 1 s
            # late: a stop could overrun the core's grace period and end in SIGKILL).
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            self.start()
        except RuntimeError as e:
            self.log.error("%s", e)
            raise SystemExit(1)
        finally:
            if main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            self.stop()
        return 0

    def _spawn(self, target, label, *args):
        t = threading.Thread(target=target, args=args, name=f"{self.name}-{label}",
                             daemon=True)
        t.start()
        self._threads.append(t)

    def _run_hooks(self, hooks, label):
        for fn in hooks:
            try:
                fn()
            except ApiError as e:
                self.log.error("%s hook %s: %s", label, getattr(fn, "__name__", fn), e)
            except Exception:
                self.log.error("%s hook %s failed:\n%s", label, getattr(fn, "__name__", fn),
                               traceback.format_exc())

    def _retry(self, what, call, permanent=(400, 403, 422)):
        """Calls call() until it works, the core refuses for good, or we stop.
        Returns its answer, or None."""
        delay, last = 0.2, None
        while not self._stopping.is_set():
            try:
                return call()
            except ApiError as e:
                if e.status in permanent or e.route_missing:
                    raise
                text = f"{e.status} {e.code}"
                if text != last:
                    self.log.warning("%s failed (%s), retrying until it works", what, e)
                    last = text
            except Exception as e:
                self.log.warning("%s failed: %s", what, e)
            self._stopping.wait(delay)
            delay = min(delay * 2, 5.0)
        return None

    def _startup(self):
        if not self.api.has_token:
            self.log.warning("no SELENA_MODULE_TOKEN: not subscribing to events or "
                             "registering CLI commands")
            self.started.set()
            return
        patterns = self.patterns
        if patterns:
            try:
                for i in range(0, len(patterns), MAX_PATTERNS_PER_SUBSCRIPTION):
                    chunk = patterns[i:i + MAX_PATTERNS_PER_SUBSCRIPTION]
                    answer = self._retry(f"subscribing to {chunk}",
                                         lambda: self.api.subscribe(chunk, self.webhook_url))
                    if answer is None:
                        break
                    self.subscriptions.append(answer)
                else:
                    self.log.info("subscribed to %s", ", ".join(patterns))
                    self.subscribed.set()
            except ApiError as e:
                self.log.error("the core refused the subscription to %s: %s", patterns, e)
        else:
            self.subscribed.set()
        if self._commands:
            try:
                if self._retry("registering CLI commands",
                               lambda: self.api.register_cli(self.cli_spec())) is not None:
                    self.log.info("registered CLI commands: %s", ", ".join(self._commands))
                    self.cli_registered.set()
            except ApiError as e:
                if e.route_missing:
                    self.log.info("this core has no CLI registry (%s): CLI commands are "
                                  "served on %s but not registered", e, CLI_PATH)
                else:
                    self.log.error("the core refused the CLI spec: %s", e)
        self.started.set()

    # --- serving -------------------------------------------------------------------------
    def handle(self, request):
        """Answers one request to the module (called by the server's threads)."""
        path, method = request.path, request.method
        if path == "/health" and method in ("GET", "HEAD"):
            return self._health()
        if path == WEBHOOK_PATH and method == "POST":
            return self._webhook(request)
        if path == CLI_PATH and method == "POST":
            return self._cli(request)
        allowed = []
        for route in self._routes:
            m = route.regex.match(path)
            if not m:
                continue
            if route.method != method and not (route.method == "GET" and method == "HEAD"):
                allowed.append(route.method)
                continue
            request.params = m.groupdict()
            try:
                return to_response(route.handler(request))
            except HttpError as e:
                return Response.error(e.status, e.code, e.detail)
            except ApiError as e:
                self.log.error("%s %s: %s", method, path, e)
                return Response.error(502, "CORE_ERROR", str(e))
            except Exception as e:
                self.log.error("%s %s failed:\n%s", method, path, traceback.format_exc())
                return Response.error(500, "INTERNAL", f"{type(e).__name__}: {e}")
        if path in self._static and method in ("GET", "HEAD"):
            return self._file(self._static[path])
        if path in RESERVED:
            allowed.append("GET" if path == "/health" else "POST")
        if allowed:
            return Response.json({"error": "METHOD_NOT_ALLOWED",
                                  "detail": f"{method} is not allowed on {path}"}, 405,
                                 {"Allow": ", ".join(sorted(set(allowed)))})
        return Response.error(404, "NOT_FOUND", f"no such path: {path}")

    def _health(self):
        body = {"status": "ok", "name": self.name, "version": self.version}
        if self._health_check:
            try:
                body.update(self._health_check() or {})
            except Exception as e:
                body.update(status="error", detail=f"{type(e).__name__}: {e}")
                return Response.json(body, 503)
        return Response.json(body)

    def _file(self, rel):
        full = os.path.join(self.install_path, rel)
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError:
            return Response.error(404, "NOT_FOUND", f"{rel} is not in the module's directory")
        return Response(data, 200, content_type(rel), {"Cache-Control": "no-cache"})

    def _verify(self, request):
        if not self.__secret and not self.__standard_secret:
            self._warn_once("nosecret", "no SELENA_WEBHOOK_SECRET: refusing every signed "
                            "request (webhooks, CLI)")
            return False
        return verify_request(request.headers, request.body, self.__secret,
                              self.__standard_secret)

    def _webhook(self, request):
        if not self._verify(request):
            return Response.error(401, "BAD_SIGNATURE", "the request's signature does not "
                                  "match this module's webhook secret")
        try:
            event = json.loads(request.body)
        except ValueError as e:
            return Response.error(400, "BAD_JSON", f"the event is not JSON: {e}")
        if (not isinstance(event, dict) or not isinstance(event.get("id"), str)
                or not isinstance(event.get("type"), str)):
            return Response.error(400, "INVALID_EVENT", 'an event is {"id", "type", ...}')
        handlers = [fn for patterns, fn in self._handlers
                    if any(match(p, event["type"]) for p in patterns)]
        if not handlers:
            return Response.json({"ok": True, "handled": 0})
        state = self._dedupe.begin(event["id"])
        if state is False:
            return Response.json({"ok": True, "duplicate": True})
        if state is None:
            return Response.error(503, "IN_PROGRESS", "this event's handlers are still running")
        ok = False
        try:
            ev = Event(event)
            try:
                ev.attempt = int(request.headers.get("X-Delivery-Attempt") or 1)
            except ValueError:
                pass
            ev.headers = request.headers
            for fn in handlers:
                fn(ev)
            ok = True
        except Exception as e:
            self.log.error("handler for %s %s failed (the core will deliver it again):\n%s",
                           event["type"], event["id"], traceback.format_exc())
            return Response.error(500, "HANDLER_FAILED", f"{type(e).__name__}: {e}")
        finally:
            self._dedupe.finish(event["id"], ok)
        return Response.json({"ok": True, "handled": len(handlers)})

    def _cli(self, request):
        if not self._verify(request):
            return Response.error(401, "BAD_SIGNATURE", "the request's signature does not "
                                  "match this module's webhook secret")
        try:
            body = json.loads(request.body)
        except ValueError as e:
            return Response.error(400, "BAD_JSON", f"the body is not JSON: {e}")
        if not isinstance(body, dict) or not isinstance(body.get("subcommand"), str):
            return Response.error(400, "INVALID_INVOCATION",
                                  'the body is {"subcommand": string, "args": {...}}')
        command = self._commands.get(body["subcommand"])
        if command is None:
            known = ", ".join(self._commands) or "none"
            return Response.json({"exit_code": 2, "stdout": "",
                                  "stderr": f"{self.name}: unknown subcommand "
                                            f"{body['subcommand']!r} (commands: {known})\n"})
        code, out, err = invoke(command, body.get("args"))
        return Response.json({"exit_code": code, "stdout": out, "stderr": err})

    # --- helpers -------------------------------------------------------------------------
    def _warn_once(self, key, text):
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning("%s", text)

    def _read_manifest(self):
        path = os.path.join(self.install_path, "manifest.json")
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
            return manifest if isinstance(manifest, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            logging.getLogger("modcore_sdk").warning("cannot read %s: %s", path, e)
            return {}

    def _ui_files(self):
        """URL path -> relative file: widget.html, settings.html, icon.svg, and every file
        named in the manifest's ui section."""
        files = {"/" + f: f for f in DEFAULT_UI_FILES}

        def walk(value, key=None):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, k)
            elif isinstance(value, list):
                for v in value:
                    walk(v, key)
            elif isinstance(value, str) and key not in ("size",) and "://" not in value:
                rel = _safe_rel(value)
                if rel and "." in os.path.basename(rel):
                    files["/" + rel] = rel
        ui = self.manifest.get("ui") if isinstance(self.manifest.get("ui"), dict) else {}
        walk(ui)
        # The dashboard asks for the canonical names: they serve the files the manifest
        # names, wherever those are.
        widget = ui.get("widget")
        canonical = {"/widget.html": widget.get("file") if isinstance(widget, dict) else widget,
                     "/settings.html": ui.get("settings"), "/icon.svg": ui.get("icon")}
        for url, rel in canonical.items():
            rel = _safe_rel(rel) if isinstance(rel, str) else None
            if rel and os.path.splitext(rel)[1] == os.path.splitext(url)[1]:
                files[url] = rel
        return files


def _safe_rel(rel):
    """A normalised relative path inside the install dir, or None."""
    rel = rel.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    if not rel or rel.startswith("/") or "\x00" in rel:
        return None
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith("../") or os.path.isabs(norm):
        return None
    return norm


def _main_dir():
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        d = os.path.dirname(os.path.abspath(path))
        if os.path.exists(os.path.join(d, "manifest.json")):
            return d
    return None
