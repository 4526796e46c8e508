"""The core's HTTP API, as seen by a module (`module.api`).

Every call sends the module token as `Authorization: Bearer ...`, JSON in and out, and
returns the decoded JSON answer (None for 204). A non-2xx answer raises ApiError with
the core's {"error", "detail"}. A 429 is retried after its Retry-After (bounded: at
most `max_429_retries` times, waiting at most `max_retry_after` seconds each). Until
the client has reached the core once, a refused connection is retried for up to
`start_grace` seconds (the core may still be starting); after that it raises at once.
Proxies from the environment are ignored (the core is local), and the token never
appears in a message, a log line or a repr.
"""

import email.utils
import errno
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger("modcore_sdk")

_REFUSED = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOENT,
            errno.EADDRNOTAVAIL}


class ApiError(Exception):
    """A call to the core failed.

    status: the HTTP status (0 if the core could not be reached),
    code:   the core's error code ("FORBIDDEN", "RATE_LIMITED", ..., or "UNREACHABLE"),
    detail: the core's explanation,
    method, path: the call, body: the raw answer (bytes)."""

    def __init__(self, status, code, detail, method="", path="", body=b"", headers=None):
        self.status = status
        self.code = code
        self.detail = detail
        self.method = method
        self.path = path
        self.body = body
        self.headers = headers or {}
        where = f" ({method} {path})" if method else ""
        super().__init__(f"HTTP {status} {code}: {detail}{where}" if status
                         else f"{code}: {detail}{where}")

    @property
    def route_missing(self):
        """True if the core has no such route at all (an older core), as opposed to a
        404 for a missing thing on a route that exists."""
        return (self.status == 404 and self.code == "NOT_FOUND"
                and str(self.detail).startswith("no route for")) or self.status == 405


def _retry_after_seconds(value, default):
    """Retry-After as seconds: delta-seconds or an HTTP date."""
    if value is None:
        return default
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, IndexError):
        return default


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx is raised as an HTTPError, hence an ApiError


def _quote(segment):
    return urllib.parse.quote(str(segment), safe="")


class _Part:
    def __init__(self, client):
        self._c = client


class Events(_Part):
    def publish(self, event_type, payload=None):
        """POST /events/publish -> {"event_id", "type", "timestamp"}."""
        return self._c.request("POST", "/events/publish",
                               {"type": event_type, "payload": payload or {}})

    def subscribe(self, event_types, webhook_url):
        """POST /events/subscribe -> {"subscription_id", "event_types", "webhook_url", ...}.
        The same (types, URL) again returns the existing subscription."""
        if isinstance(event_types, str):
            event_types = [event_types]
        return self._c.request("POST", "/events/subscribe",
                               {"event_types": list(event_types), "webhook_url": webhook_url})

    def unsubscribe(self, subscription_id):
        """DELETE /events/subscribe/{id}."""
        return self._c.request("DELETE", "/events/subscribe/" + _quote(subscription_id))

    def subscriptions(self):
        """GET /events/subscriptions -> this module's subscriptions (a list)."""
        return self._c.request("GET", "/events/subscriptions").get("subscriptions", [])

    def deliveries(self, status=None, limit=None):
        """GET /events/deliveries -> this module's webhook deliveries (a list).
        status: "pending", "delivered" or "dead"."""
        answer = self._c.request("GET", "/events/deliveries",
                                 query={"status": status, "limit": limit})
        return answer.get("deliveries", [])

    def retry_delivery(self, delivery_id):
        """POST /events/deliveries/{id}/retry -> the delivery."""
        return self._c.request("POST", f"/events/deliveries/{_quote(delivery_id)}/retry")


class Devices(_Part):
    def list(self):
        """GET /devices -> a list of devices."""
        return self._c.request("GET", "/devices").get("devices", [])

    def get(self, device_id):
        """GET /devices/{id} -> the device."""
        return self._c.request("GET", "/devices/" + _quote(device_id))

    def create(self, name, type, protocol=None, capabilities=None, meta=None):
        """POST /devices -> the new device (type: sensor, actuator, controller, virtual)."""
        body = {"name": name, "type": type}
        if protocol is not None:
            body["protocol"] = protocol
        if capabilities is not None:
            body["capabilities"] = list(capabilities)
        if meta is not None:
            body["meta"] = meta
        return self._c.request("POST", "/devices", body)

    def update_state(self, device_id, state):
        """PATCH /devices/{id}/state -> the device; the core publishes
        device.state_changed."""
        return self._c.request("PATCH", f"/devices/{_quote(device_id)}/state", {"state": state})

    def delete(self, device_id):
        """DELETE /devices/{id} (DRIVER and SYSTEM modules)."""
        return self._c.request("DELETE", "/devices/" + _quote(device_id))


class Config(_Part):
    def all(self):
        """GET /modules/{me}/config -> {"module", "config", "layers"}."""
        return self._c.request("GET", f"/modules/{_quote(self._c.module_name)}/config")

    def get(self, key=None, default=None):
        """The effective config (a dict), or one key of it (default if absent)."""
        config = self.all().get("config") or {}
        return config if key is None else config.get(key, default)

    def set(self, key, value):
        """POST /modules/{me}/config {"key", "value"} -> the new effective config."""
        answer = self._c.request("POST", f"/modules/{_quote(self._c.module_name)}/config",
                                 {"key": key, "value": value})
        return (answer or {}).get("config")


_MISSING = object()


class Storage(_Part):
    """The module's own key/value storage (permission storage.rw)."""

    def get(self, key, default=_MISSING):
        """GET /storage/{key} -> the value. A key that does not exist returns default,
        or raises ApiError 404 if no default is given."""
        try:
            return self._c.request("GET", "/storage/" + _quote(key)).get("value")
        except ApiError as e:
            if e.status == 404 and not e.route_missing and default is not _MISSING:
                return default
            raise

    def put(self, key, value):
        """PUT /storage/{key} {"value"}."""
        return self._c.request("PUT", "/storage/" + _quote(key), {"value": value})

    def delete(self, key):
        """DELETE /storage/{key}. True if it existed, False if it did not."""
        try:
            self._c.request("DELETE", "/storage/" + _quote(key))
            return True
        except ApiError as e:
            if e.status == 404 and not e.route_missing:
                return False
            raise

    def list(self, prefix=None, after=None, limit=None):
        """GET /storage?prefix&after&limit -> {"items": [...], "next": cursor or None}."""
        return self._c.request("GET", "/storage",
                               query={"prefix": prefix, "after": after, "limit": limit})

    def iterate(self, prefix=None, page=100):
        """Every item under prefix, following the "next" cursor."""
        after = None
        while True:
            answer = self.list(prefix=prefix, after=after, limit=page) or {}
            yield from answer.get("items") or []
            after = answer.get("next")
            if not after:
                return

    def batch(self, put=None, delete=None):
        """POST /storage/batch {"put": {key: value}, "delete": [keys]}: all or nothing."""
        return self._c.request("POST", "/storage/batch",
                               {"put": dict(put or {}), "delete": list(delete or [])})


class Secrets(_Part):
    def proxy(self, provider, url, method="GET", headers=None, body=None):
        """POST /secrets/proxy: the core calls url with the provider's OAuth token
        -> {"status_code", "headers", "body"} (INTEGRATION modules, secrets.proxy)."""
        return self._c.request("POST", "/secrets/proxy",
                               {"provider": provider, "url": url, "method": method,
                                "headers": headers or {}, "body": body})

    def oauth_start(self, provider, scopes=()):
        """POST /secrets/oauth/start -> {device_code, user_code, verification_url, ...}."""
        return self._c.request("POST", "/secrets/oauth/start",
                               {"provider": provider, "scopes": list(scopes)})

    def oauth_status(self, provider):
        """GET /secrets/oauth/status?provider= -> {"status"}."""
        return self._c.request("GET", "/secrets/oauth/status", query={"provider": provider})


class ApiClient:
    """A client of the core's /api/v1 for one module token.

    Parts: .events, .devices, .config, .storage, .secrets; shortcuts .publish(),
    .subscribe(), .unsubscribe(), .self(); the raw .request()."""

    def __init__(self, base_url, token, module_name="", *, timeout=10.0, max_429_retries=5,
                 max_retry_after=30.0, start_grace=15.0):
        self.base_url = (base_url or "").rstrip("/")
        self.__token = token or ""
        self.module_name = module_name
        self.timeout = timeout
        self.max_429_retries = max_429_retries
        self.max_retry_after = max_retry_after
        self.start_grace = start_grace
        self._created = time.monotonic()
        self._reached = threading.Event()
        # No proxies (the core is local) and no redirects (the token must not follow one).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   _NoRedirect())
        self.events = Events(self)
        self.devices = Devices(self)
        self.config = Config(self)
        self.storage = Storage(self)
        self.secrets = Secrets(self)

    def __repr__(self):
        return f"<ApiClient {self.base_url} module={self.module_name!r}>"

    @property
    def has_token(self):
        return bool(self.__token)

    # --- shortcuts ---------------------------------------------------------------
    def publish(self, event_type, payload=None):
        return self.events.publish(event_type, payload)

    def subscribe(self, event_types, webhook_url):
        return self.events.subscribe(event_types, webhook_url)

    def unsubscribe(self, subscription_id):
        return self.events.unsubscribe(subscription_id)

    def self(self):
        """GET /modules/self -> this module's record as the core knows it."""
        return self.request("GET", "/modules/self")

    module_self = self

    def health(self):
        """GET /health (no token needed) -> {status, version, mode, uptime, integrity}."""
        return self.request("GET", "/health")

    def register_cli(self, spec):
        """POST /cli/spec with a RegisterCliSpec {"name", "about", "subcommands"}."""
        return self.request("POST", "/cli/spec", spec)

    # --- the one request function ------------------------------------------------
    def request(self, method, path, body=None, *, query=None, headers=None):
        """One call; returns the decoded JSON answer (None if empty). Raises ApiError."""
        url = self.base_url + path
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        attempts_429 = 0
        refused_delay = 0.1
        while True:
            req = urllib.request.Request(url, data=data, method=method)
            req.add_header("Accept", "application/json")
            if self.__token:
                req.add_header("Authorization", "Bearer " + self.__token)
            if data is not None:
                req.add_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                req.add_header(k, v)
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    self._reached.set()
                    return self._decode(raw, resp.status, method, path)
            except urllib.error.HTTPError as e:
                self._reached.set()
                raw = e.read() or b""
                if e.code == 429 and attempts_429 < self.max_429_retries:
                    attempts_429 += 1
                    wait = min(_retry_after_seconds(e.headers.get("Retry-After"), 1.0),
                               self.max_retry_after)
                    log.debug("core answered 429 to %s %s: retrying in %.1f s", method, path,
                              wait)
                    time.sleep(wait)
                    continue
                raise self._error(e.code, raw, method, path, e.headers) from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                refused = isinstance(reason, OSError) and (
                    isinstance(reason, ConnectionRefusedError) or reason.errno in _REFUSED)
                in_grace = (not self._reached.is_set()
                            and time.monotonic() - self._created < self.start_grace)
                if refused and in_grace:
                    time.sleep(refused_delay)
                    refused_delay = min(refused_delay * 2, 1.0)
                    continue
                raise ApiError(0, "UNREACHABLE", f"cannot reach the core at {self.base_url}: "
                               f"{reason}", method, path) from None

    @staticmethod
    def _decode(raw, status, method, path):
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(status, "BAD_ANSWER", "the core's answer is not JSON: "
                           + raw[:200].decode("utf-8", "replace"), method, path, raw) from None

    @staticmethod
    def _error(status, raw, method, path, headers):
        code, detail = "HTTP_%d" % status, raw[:500].decode("utf-8", "replace").strip()
        try:
            obj = json.loads(raw)
            if isinstance(obj, dict):
                code = str(obj.get("error") or code)
                detail = obj.get("detail", detail)
                if not isinstance(detail, str):
                    detail = json.dumps(detail)
        except ValueError:
            pass
        return ApiError(status, code, detail, method, path, raw, dict(headers or {}))
