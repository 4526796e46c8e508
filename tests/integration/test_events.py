#!/usr/bin/env python3
"""Integration test of the event side of modcore: the event bus, signed webhook delivery
that never loses an acknowledged event, devices, module config and the modctl commands
`events tail` and `deliveries`. The real modcored, real module processes, real HTTP.

    python3 tests/integration/test_events.py --build <build dir> [-k SUBSTRING] [--keep]

Starts <build>/modcored on a free port with a temporary data dir and a config with short
webhook timings, and installs:
  receiver   tests/fixtures/receiver: verifies both signature schemes of every delivery,
             records what it got; its /mode route makes it answer 503/410/429/301/401 or
             answer late; subscribed to test.*, device.*, module.*
  receiver2  the same program, subscribed to exh.* only, for the give-up (max_age) path
  pub        tests/fixtures/probe (reveals its token) with events.publish/subscribe and
             device.read/write: the module the test publishes as
  noperm     the probe without permissions
  cfgmod, lifecycle   probes for module config and module.loaded/unloaded
The tests run in order and share that state; the whole run takes about 40 s. The daemon is
always stopped and the temp dir removed at the end (--keep keeps it); its log is printed
under every failing test. Python standard library only.
Last line: "N passed, M failed"; exit status 1 if anything failed.
"""
import email.utils
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import harness
from harness import (SOURCE_DIR, Check, admin, api, free_port, log, make_zip,
                     modctl, module_call, pick_module_port, pid_alive, probe_zip, require,
                     test, wait_for)

RECEIVER_DIR = os.path.join(SOURCE_DIR, "tests", "fixtures", "receiver")
MAX_AGE_S = 20
BULK = 1000  # events in the ordering and kill -9 tests
MAIN_PATTERNS = ["test.*", "device.*", "module.*"]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

CONFIG = harness.sandbox_config(stop_grace_s=2) + f"""
[rate_limit]
rate = 100000
burst = 100000

[webhook]
timeout_ms = 1000
retry_base_ms = 100
retry_cap_ms = 1000
max_age_s = {MAX_AGE_S}

[modules.cfgmod]
size = 2
"""


class Ctx(harness.Ctx):
    """State shared by the tests, in order (the daemon, its dirs and admin token: see
    harness.Ctx)."""

    start_timeout = 20
    log_limit = 8000
    admin_retry = False
    modctl_timeout = 60
    ports = {}  # module name -> port
    tokens = {}  # module name -> module token
    exh = []  # receiver2: [(event id, publish time)] published while it answers 401
    survivor = None  # a device that must survive the kill -9 restart
    saved_color = None  # cfgmod's saved config value that must survive it too


C = harness.use(Ctx())


# --- the core's API -------------------------------------------------------------------------

def as_module(name, method, path, **kwargs):
    return api(method, path, token=C.tokens[name], **kwargs)


class Publisher:
    """Publishes over one kept-alive connection (reconnecting when needed)."""

    def __init__(self, token):
        self.token = token
        self.conn = None

    def publish(self, type_, payload):
        """Returns (status, json)."""
        body = json.dumps({"type": type_, "payload": payload}).encode()
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", C.daemon.port,
                                                           timeout=30)
                self.conn.request("POST", "/api/v1/events/publish", body=body, headers={
                    "Authorization": "Bearer " + self.token,
                    "Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, (json.loads(data) if data else None)
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        return None

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None


def publish(name, type_, payload=None):
    """Publishes as module name; returns the event id (fails the test on an error)."""
    r = as_module(name, "POST", "/events/publish",
                  body={"type": type_, "payload": payload if payload is not None else {}})
    require(r.status == 201 and r.json and r.json.get("event_id"),
            f"publish {type_} as {name}: {r!r}")
    return r.json["event_id"]


def is_error(r, status, code=None):
    """harness.is_error without requiring a "detail" key."""
    return harness.is_error(r, status, code, detail=False)


def deliveries(module=None, status=None, limit=1000):
    query = f"?limit={limit}" + (f"&module={module}" if module else "") + \
        (f"&status={status}" if status else "")
    r = admin("GET", "/events/deliveries" + query)
    require(r.status == 200 and isinstance((r.json or {}).get("deliveries"), list),
            f"GET /events/deliveries{query}: {r!r}")
    return r.json["deliveries"]


def delivery_of(event_id, module="receiver"):
    for d in deliveries(module):
        if d["event_id"] == event_id:
            return d
    return None


def module_record(name):
    r = admin("GET", f"/modules/{name}")
    require(r.status == 200 and r.json, f"GET /modules/{name}: {r!r}")
    return r.json


# --- module processes -----------------------------------------------------------------------

def rx(path, method="GET", body=None, name="receiver"):
    """Calls a receiver's control route; fails the test if it does not answer 200."""
    got = module_call(C.ports[name], method, path, body)
    require(got and got[0] == 200, f"{name} {method} {path}: {got}")
    return got[1]


def rx_mode(name="receiver", **mode):
    full = {"status": 200, "retry_after": None, "delay": 0}
    full.update(mode)
    rx("/mode", "POST", full, name)


def received(name="receiver"):
    return rx("/received", name=name)


def arrived(event_id, name="receiver"):
    """The receiver's records of event_id (deliveries it accepted)."""
    return [e for e in received(name)["events"] if e["id"] == event_id]


def wait_arrived(event_id, timeout=10, name="receiver"):
    return wait_for(lambda: arrived(event_id, name), timeout, 0.1)


def receiver_zip(name, port, patterns):
    with open(os.path.join(RECEIVER_DIR, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    manifest.update({"name": name, "port": port})
    with open(os.path.join(RECEIVER_DIR, "main.py"), encoding="utf-8") as f:
        main = f.read()
    return make_zip([("manifest.json", json.dumps(manifest, indent=2)), ("main.py", main),
                     ("patterns.txt", ",".join(patterns) + "\n")])


def install(name, archive):
    r = admin("POST", "/modules/install", body=archive, content_type="application/zip")
    require(r.status == 201 and (r.json or {}).get("status") == "RUNNING",
            f"install {name}: {r!r}")
    return r.json


def install_probe(name, permissions, type_="INTEGRATION", extra=()):
    port = pick_module_port()
    install(name, probe_zip(name, port, extra=extra, permissions=permissions, type=type_))
    C.ports[name] = port
    got = wait_for(lambda: module_call(port, "GET", "/token"), 5)
    require(got and got[0] == 200, f"{name} GET /token: {got}")
    C.tokens[name] = got[1]["token"]


def install_receiver(name, patterns):
    port = pick_module_port()
    install(name, receiver_zip(name, port, patterns))
    C.ports[name] = port
    got = wait_for(lambda: module_call(port, "GET", "/token"), 5)
    require(got and got[0] == 200, f"{name} GET /token: {got}")
    C.tokens[name] = got[1]["token"]
    require(wait_subscribed(name, patterns), f"{name} never subscribed to {patterns}")


def subscriptions(name):
    r = as_module(name, "GET", "/events/subscriptions")
    require(r.status == 200 and isinstance((r.json or {}).get("subscriptions"), list),
            f"GET /events/subscriptions as {name}: {r!r}")
    return r.json["subscriptions"]


def wait_subscribed(name, patterns, timeout=10):
    """The subscription of receiver `name` to exactly these patterns, once it exists."""
    def find():
        for s in subscriptions(name):
            if s["event_types"] == patterns:
                return s
        return None
    return wait_for(find, timeout, 0.1)


def first_arrivals(events, run):
    """seq -> index of its first arrival, and the number of repeated arrivals, over the
    receiver's events of one bulk run."""
    first, dups = {}, 0
    for index, e in enumerate(events):
        if e["type"] != "test.n" or e["payload"].get("run") != run:
            continue
        if e["seq"] in first:
            dups += 1
        else:
            first[e["seq"]] = index
    return first, dups


def explain_missing(missing, acked):
    """What the core knows of a few events that never arrived (for the failure text)."""
    ids = dict(acked)
    by_event = {}
    for d in deliveries():
        by_event.setdefault(d["event_id"], []).append(d)
    lines = []
    for seq in missing[:5]:
        found = by_event.get(ids.get(seq), [])
        lines.append(f"seq {seq} event {ids.get(seq)}: " + (
            "; ".join(f"{d['status']} attempts={d['attempts']} error={d['last_error']!r} "
                      f"subscription={d['subscription_id']} url={d['url']}" for d in found)
            or "no delivery listed (among the 1,000 newest)"))
    return "\n   " + "\n   ".join(lines)


def order_problems(first, seqs):
    """Where a later event (by publish order `seqs`) arrived before an earlier one."""
    problems = []
    last_index, last_seq = -1, None
    for seq in seqs:
        if seq not in first:
            continue
        if first[seq] < last_index:
            problems.append(f"seq {seq} first arrived before seq {last_seq}")
        else:
            last_index, last_seq = first[seq], seq
    return problems


def show(p):
    return f"exit {p.returncode}, stdout {p.stdout[-1500:]!r}, stderr {p.stderr[-800:]!r}"


# --- tests --------------------------------------------------------------------------------

@test
def test_01_install_modules():
    install_receiver("receiver", MAIN_PATTERNS)
    install_probe("pub", ["events.publish", "events.subscribe", "device.read", "device.write"])
    install_probe("noperm", [])
    c = Check()
    c.expect(received()["bad"] == 0, "the receiver saw a bad signature")
    c.done()


@test
def test_02_exhaustion_start():
    """receiver2 answers 401 (as if the secret were wrong) to two events now; they are
    checked in test_10, once max_age has passed."""
    install_receiver("receiver2", ["exh.*"])
    rx_mode("receiver2", status=401)
    for n in range(2):
        C.exh.append((publish("pub", "exh.one" if n == 0 else "exh.two", {"n": n}),
                      time.monotonic()))


@test
def test_03_publish_delivered_signed():
    c = Check()
    rx("/reset", "POST", {})
    r = as_module("pub", "POST", "/events/publish",
                  body={"type": "test.a", "payload": {"hello": "world", "n": 1}})
    require(r.status == 201, f"publish test.a: {r!r}")
    body = r.json or {}
    c.expect(set(body) == {"event_id", "type", "timestamp"}, f"publish answer keys: {body}")
    event_id = body.get("event_id", "")
    c.expect(UUID.match(event_id), f"event_id is not a uuid: {event_id!r}")
    c.expect(body.get("type") == "test.a", f"publish answer type: {body}")
    c.expect(ISO_Z.match(body.get("timestamp", "")), f"timestamp not ISO-8601 Z: {body}")
    got = wait_arrived(event_id)
    require(got, f"test.a {event_id} never reached the receiver: {received()}")
    e = got[0]
    h = e["headers"]
    c.expect(e["type"] == "test.a" and e["source"] == "pub", f"event as received: {e}")
    c.expect(e["payload"] == {"hello": "world", "n": 1}, f"payload as received: {e['payload']}")
    c.expect(e["timestamp"] == body.get("timestamp"), f"timestamp differs: {e} vs {body}")
    c.expect(h.get("X-Event-Id") == event_id, f"X-Event-Id: {h}")
    c.expect(h.get("X-Event-Type") == "test.a", f"X-Event-Type: {h}")
    c.expect(h.get("webhook-id") == event_id, f"webhook-id: {h}")
    c.expect((h.get("Content-Type") or "").startswith("application/json"), f"Content-Type: {h}")
    ts = h.get("webhook-timestamp") or ""
    c.expect(ts.isdigit() and abs(int(ts) - time.time()) < 60, f"webhook-timestamp: {ts!r}")
    c.expect(h.get("X-Delivery-Attempt") == "1", f"X-Delivery-Attempt: {h}")
    c.expect(received()["bad"] == 0, "the receiver counted a bad signature")
    d = delivery_of(event_id)
    c.expect(d and d["status"] == "delivered" and d["attempts"] == 1,
             f"GET /events/deliveries for {event_id}: {d}")
    # Newest first over all modules (receiver2 still holds older ones from test_02).
    newest = deliveries(limit=1)
    c.expect([x["event_id"] for x in newest] == [event_id],
             f"GET /events/deliveries?limit=1 is not the newest delivery: {newest}")
    # The operator may publish too, never reserved types.
    r = admin("POST", "/events/publish", body={"type": "test.operator", "payload": {}})
    c.expect(r.status == 201, f"publish as the operator: {r!r}")
    c.done()


@test
def test_04_publish_validation():
    c = Check()
    for type_ in ("core.x", "module.loaded", "device.state_changed", "webhook.exhausted"):
        r = as_module("pub", "POST", "/events/publish", body={"type": type_, "payload": {}})
        c.expect(is_error(r, 403), f"publish {type_} as a module: {r!r}")
    r = admin("POST", "/events/publish", body={"type": "core.x", "payload": {}})
    c.expect(is_error(r, 403), f"publish core.x as the operator: {r!r}")
    for type_ in ("has space", "Upper.Case", "a..b", "a" * 200, "", ".a", "a.", "a.*", "é"):
        r = as_module("pub", "POST", "/events/publish", body={"type": type_, "payload": {}})
        c.expect(is_error(r, 400), f"publish type {type_[:40]!r}: {r!r}")
    for payload in ([1, 2], "text", 5, None, True):
        r = as_module("pub", "POST", "/events/publish", body={"type": "test.p", "payload": payload})
        c.expect(is_error(r, 400), f"publish payload {payload!r}: {r!r}")
    r = as_module("pub", "POST", "/events/publish", body={"payload": {}})
    c.expect(is_error(r, 400), f"publish without a type: {r!r}")
    r = as_module("pub", "POST", "/events/publish", body={"type": 7})
    c.expect(is_error(r, 400), f"publish with a number type: {r!r}")
    r = as_module("pub", "POST", "/events/publish", body=b"[1]", content_type="application/json")
    c.expect(is_error(r, 400), f"publish a JSON array body: {r!r}")
    r = as_module("pub", "POST", "/events/publish", body=b"{not json",
                  content_type="application/json")
    c.expect(is_error(r, 400), f"publish a broken JSON body: {r!r}")
    big = {"type": "test.big", "payload": {"x": "a" * (65 * 1024)}}
    r = as_module("pub", "POST", "/events/publish", body=big)
    c.expect(is_error(r, 413), f"publish a body over 64 KiB: {r!r}")
    near = {"type": "test.near", "payload": {"x": "b" * (60 * 1024)}}
    r = as_module("pub", "POST", "/events/publish", body=near)
    c.expect(r.status == 201, f"publish a 60 KiB body: {r!r}")
    if r.status == 201:
        got = wait_arrived(r.json["event_id"])
        c.expect(got and len(got[0]["payload"]["x"]) == 60 * 1024,
                 "the 60 KiB event did not arrive whole")
    r = as_module("pub", "POST", "/events/publish",
                  body=json.dumps({"type": "test.x", "payload": {}}).encode(),
                  content_type="text/plain")
    c.expect(is_error(r, 415), f"publish as text/plain: {r!r}")
    r = as_module("noperm", "POST", "/events/publish", body={"type": "test.x", "payload": {}})
    c.expect(is_error(r, 403) and "events.publish" in r.json.get("detail", ""),
             f"publish without events.publish: {r!r}")
    r = api("POST", "/events/publish", body={"type": "test.x", "payload": {}})
    c.expect(is_error(r, 401), f"publish without a token: {r!r}")
    r = api("POST", "/events/publish", body={"type": "test.x", "payload": {}}, token="x" * 64)
    c.expect(is_error(r, 401), f"publish with an unknown token: {r!r}")
    c.expect(received()["bad"] == 0, "the receiver counted a bad signature")
    c.done()


@test
def test_05_subscribe_validation():
    c = Check()
    port = C.ports["receiver"]
    good_url = f"http://localhost:{port}/webhook/events"
    bad_urls = [f"http://localhost:{port + 1}/webhook/events",
                f"http://localhost:{C.ports['pub']}/webhook/events",
                f"http://example.com:{port}/webhook/events",
                f"http://10.0.0.1:{port}/webhook/events",
                f"https://localhost:{port}/webhook/events",
                f"http://localhost:{port}@example.com/webhook/events",
                f"http://localhost/webhook/events",
                "not a url", ""]
    for url in bad_urls:
        r = as_module("receiver", "POST", "/events/subscribe",
                      body={"event_types": ["test.*"], "webhook_url": url})
        c.expect(is_error(r, 400, "INVALID_WEBHOOK_URL"), f"subscribe to {url!r}: {r!r}")
    for types in (["Bad Pattern"], ["a.*.b"], ["*.a"], ["a..b"], ["test.*", "x y"],
                  [], ["p%d.*" % i for i in range(33)], "test.*", [5]):
        r = as_module("receiver", "POST", "/events/subscribe",
                      body={"event_types": types, "webhook_url": good_url})
        c.expect(is_error(r, 400), f"subscribe to patterns {str(types)[:60]}: {r!r}")
    r = as_module("noperm", "POST", "/events/subscribe",
                  body={"event_types": ["test.*"], "webhook_url": good_url})
    c.expect(is_error(r, 403), f"subscribe without events.subscribe: {r!r}")

    # A subscription of its own, removed again: its events stop.
    r = as_module("receiver", "POST", "/events/subscribe",
                  body={"event_types": ["unsub.*"], "webhook_url": good_url})
    require(r.status == 201, f"subscribe to unsub.*: {r!r}")
    sub = r.json
    c.expect(sub.get("event_types") == ["unsub.*"] and sub.get("webhook_url") == good_url
             and UUID.match(sub.get("subscription_id", "")), f"subscribe answer: {sub}")
    r = as_module("receiver", "POST", "/events/subscribe",
                  body={"event_types": ["unsub.*"], "webhook_url": good_url})
    c.expect(r.status == 201 and r.json.get("subscription_id") == sub["subscription_id"],
             f"the same subscription again did not give the same id: {r!r}")
    first = publish("pub", "unsub.one")
    c.expect(wait_arrived(first), "unsub.one never arrived")
    r = as_module("pub", "DELETE", f"/events/subscribe/{sub['subscription_id']}")
    c.expect(is_error(r, 404), f"another module deletes the subscription: {r!r}")
    r = as_module("receiver", "DELETE", f"/events/subscribe/{sub['subscription_id']}")
    c.expect(r.status == 204 and not r.body, f"DELETE the subscription: {r!r}")
    r = as_module("receiver", "DELETE", f"/events/subscribe/{sub['subscription_id']}")
    c.expect(is_error(r, 404), f"DELETE it again: {r!r}")
    second = publish("pub", "unsub.two")
    c.expect(not [d for d in deliveries("receiver") if d["event_id"] == second],
             "a delivery was queued for the removed subscription")
    marker = publish("pub", "test.marker")
    c.expect(wait_arrived(marker), "test.marker never arrived")
    time.sleep(0.5)
    c.expect(not arrived(second), "unsub.two arrived after the subscription was removed")

    # Each module sees only its own subscriptions; the operator sees all.
    pub_url = f"http://127.0.0.1:{C.ports['pub']}/hook"
    r = as_module("pub", "POST", "/events/subscribe",
                  body={"event_types": ["nobody.*"], "webhook_url": pub_url})
    c.expect(r.status == 201, f"pub subscribes to its own port: {r!r}")
    mine = subscriptions("pub")
    c.expect(mine and all(s["module"] == "pub" for s in mine)
             and [s["event_types"] for s in mine] == [["nobody.*"]],
             f"pub's subscriptions: {mine}")
    theirs = subscriptions("receiver")
    c.expect(theirs and all(s["module"] == "receiver" for s in theirs),
             f"receiver's subscriptions: {theirs}")
    c.expect(any(s["event_types"] == MAIN_PATTERNS for s in theirs),
             f"receiver's start-up subscription is not listed: {theirs}")
    r = as_module("pub", "GET", "/events/subscriptions?module=receiver")
    c.expect(r.status == 200 and all(s["module"] == "pub" for s in r.json["subscriptions"]),
             f"pub asks for receiver's subscriptions: {r!r}")
    r = admin("GET", "/events/subscriptions")
    everyone = {s["module"] for s in (r.json or {}).get("subscriptions", [])}
    c.expect({"pub", "receiver", "receiver2"} <= everyone,
             f"the operator's list of subscriptions: {r!r}")
    r = admin("GET", "/events/subscriptions?module=pub")
    c.expect(r.status == 200 and {s["module"] for s in r.json["subscriptions"]} == {"pub"},
             f"the operator's list for pub: {r!r}")
    c.done()


@test
def test_06_devices():
    c = Check()
    rx("/reset", "POST", {})
    spec = {"name": "lamp", "type": "actuator", "protocol": "zigbee",
            "capabilities": ["on_off", "brightness"], "meta": {"room": "hall"}}
    r = as_module("pub", "POST", "/devices", body=spec)
    require(r.status == 201, f"POST /devices: {r!r}")
    dev = r.json
    device_id = dev.get("device_id", "")
    c.expect(UUID.match(device_id), f"device_id: {dev}")
    c.expect(dev.get("module_id") == "pub", f"module_id is not the creator: {dev}")
    for key in ("name", "type", "protocol", "capabilities", "meta"):
        c.expect(dev.get(key) == spec[key], f"device {key}: {dev}")
    c.expect(dev.get("state") == {} and ISO_Z.match(dev.get("last_seen", "")),
             f"device state/last_seen: {dev}")
    for bad in ({"type": "sensor"}, {"name": "", "type": "sensor"},
                {"name": "x" * 200, "type": "sensor"}, {"name": "x", "type": "robot"},
                {"name": "x"}, {"name": "x", "type": "sensor", "capabilities": "on"},
                {"name": "x", "type": "sensor", "capabilities": [1]},
                {"name": "x", "type": "sensor", "meta": []},
                {"name": "x", "type": "sensor", "protocol": 5}):
        r = as_module("pub", "POST", "/devices", body=bad)
        c.expect(is_error(r, 422), f"POST /devices {bad}: {r!r}")
    r = as_module("noperm", "POST", "/devices", body=spec)
    c.expect(is_error(r, 403), f"POST /devices without device.write: {r!r}")
    r = as_module("noperm", "GET", "/devices")
    c.expect(is_error(r, 403), f"GET /devices without device.read: {r!r}")
    r = as_module("pub", "GET", "/devices")
    c.expect(r.status == 200 and any(d["device_id"] == device_id for d in r.json["devices"]),
             f"GET /devices: {r!r}")
    r = as_module("pub", "GET", f"/devices/{device_id}")
    c.expect(r.status == 200 and r.json == dev, f"GET /devices/{{id}}: {r!r}")
    r = as_module("pub", "GET", "/devices/00000000-0000-4000-8000-000000000000")
    c.expect(is_error(r, 404), f"GET an unknown device: {r!r}")

    r = as_module("pub", "PATCH", f"/devices/{device_id}/state", body={"state": {"on": True}})
    c.expect(r.status == 200 and r.json.get("state") == {"on": True}, f"PATCH state: {r!r}")
    r = as_module("pub", "PATCH", f"/devices/{device_id}/state",
                  body={"state": {"on": False, "level": 3}})
    c.expect(r.status == 200 and r.json.get("state") == {"on": False, "level": 3},
             f"PATCH state again: {r!r}")
    for bad in ({"state": 5}, {"state": [1]}, {}):
        r = as_module("pub", "PATCH", f"/devices/{device_id}/state", body=bad)
        c.expect(is_error(r, 400), f"PATCH state {bad}: {r!r}")
    r = as_module("pub", "PATCH", "/devices/00000000-0000-4000-8000-000000000000/state",
                  body={"state": {}})
    c.expect(is_error(r, 404), f"PATCH an unknown device: {r!r}")

    def changes():
        got = [e for e in received()["events"] if e["type"] == "device.state_changed"
               and e["payload"].get("device_id") == device_id]
        return got if len(got) >= 2 else None

    got = wait_for(changes, 10)
    if c.expect(got, f"two device.state_changed events never arrived: {received()['events']}"):
        p = [e["payload"] for e in got]
        c.expect(p[0] == {"device_id": device_id, "old_state": {}, "new_state": {"on": True},
                          "changed_by": "pub"}, f"first device.state_changed: {p[0]}")
        c.expect(p[1].get("old_state") == {"on": True}
                 and p[1].get("new_state") == {"on": False, "level": 3},
                 f"second device.state_changed: {p[1]}")
        c.expect(all(e["source"] == "core" for e in got), f"source of device events: {got}")
    reg = [e for e in received()["events"] if e["type"] == "device.registered"]
    c.expect(any(e["payload"].get("device_id") == device_id for e in reg),
             f"no device.registered for {device_id}: {reg}")

    r = as_module("pub", "DELETE", f"/devices/{device_id}")
    c.expect(is_error(r, 403), f"DELETE by an INTEGRATION module: {r!r}")
    r = admin("DELETE", f"/devices/{device_id}")
    c.expect(r.status == 204, f"DELETE by the operator: {r!r}")
    r = admin("DELETE", f"/devices/{device_id}")
    c.expect(is_error(r, 404), f"DELETE it again: {r!r}")
    r = as_module("pub", "GET", f"/devices/{device_id}")
    c.expect(is_error(r, 404), f"GET a removed device: {r!r}")
    got = wait_for(lambda: [e for e in received()["events"] if e["type"] == "device.removed"
                            and e["payload"].get("device_id") == device_id], 10)
    c.expect(got, "device.removed never arrived")

    # One that must survive the kill -9 restart (test_12).
    r = as_module("pub", "POST", "/devices", body={"name": "survivor", "type": "sensor"})
    if c.expect(r.status == 201, f"POST /devices survivor: {r!r}"):
        C.survivor = r.json["device_id"]
        r = as_module("pub", "PATCH", f"/devices/{C.survivor}/state",
                      body={"state": {"t": 21.5}})
        c.expect(r.status == 200, f"PATCH survivor: {r!r}")
    c.done()


@test
def test_07_module_config():
    c = Check()
    toml = 'color = "red"\nsize = 1\n'
    install_probe("cfgmod", ["device.read"], extra=[("config.toml", toml)])
    r = as_module("cfgmod", "GET", "/modules/cfgmod/config")
    require(r.status == 200, f"GET config as cfgmod: {r!r}")
    c.expect(r.json.get("config") == {"color": "red", "size": 2},
             f"effective config without a saved value: {r.json}")
    c.expect(r.json.get("layers") == {"defaults": {"color": "red", "size": 1},
                                      "core": {"size": 2}, "saved": {}},
             f"config layers: {r.json}")
    r = as_module("cfgmod", "POST", "/modules/cfgmod/config", body={"key": "size", "value": 3})
    c.expect(r.status == 200 and r.json.get("config") == {"color": "red", "size": 3}
             and r.json["layers"]["saved"] == {"size": 3}, f"POST size=3: {r!r}")
    r = as_module("cfgmod", "GET", "/modules/cfgmod/config")
    c.expect(r.status == 200 and r.json.get("config") == {"color": "red", "size": 3},
             f"GET after POST size=3: {r!r}")
    r = as_module("cfgmod", "POST", "/modules/cfgmod/config", body={"key": "size", "value": None})
    c.expect(r.status == 200 and r.json.get("config") == {"color": "red", "size": 2}
             and r.json["layers"]["saved"] == {}, f"POST size=null (unsave): {r!r}")
    for bad in ({"value": 1}, {"key": 5, "value": 1}, {"key": "a b", "value": 1},
                {"key": "", "value": 1}, {"key": "x"}):
        r = as_module("cfgmod", "POST", "/modules/cfgmod/config", body=bad)
        c.expect(is_error(r, 400), f"POST config {bad}: {r!r}")
    r = as_module("pub", "GET", "/modules/cfgmod/config")
    c.expect(is_error(r, 403), f"another module reads the config: {r!r}")
    r = as_module("pub", "POST", "/modules/cfgmod/config", body={"key": "size", "value": 9})
    c.expect(is_error(r, 403), f"another module writes the config: {r!r}")
    r = admin("GET", "/modules/nosuch/config")
    c.expect(is_error(r, 404), f"config of an unknown module: {r!r}")

    r = as_module("pub", "POST", "/modules/cfgmod/ui-token")
    c.expect(is_error(r, 403), f"a module asks for a UI token: {r!r}")
    r = admin("POST", "/modules/nosuch/ui-token")
    c.expect(is_error(r, 404), f"UI token for an unknown module: {r!r}")
    r = admin("POST", "/modules/cfgmod/ui-token")
    require(r.status == 201 and r.json.get("ui_token"), f"POST ui-token: {r!r}")
    c.expect(r.json.get("ttl") == 3600 and r.json.get("module") == "cfgmod", f"ui-token: {r.json}")
    ui = r.json["ui_token"]
    r = api("GET", "/modules/cfgmod/config", token=ui)
    c.expect(r.status == 200 and r.json.get("config", {}).get("size") == 2,
             f"UI token reads its module's config: {r!r}")
    r = api("POST", "/modules/cfgmod/config", body={"key": "color", "value": "blue"}, token=ui)
    c.expect(r.status == 200 and r.json.get("config") == {"color": "blue", "size": 2},
             f"UI token writes its module's config: {r!r}")
    C.saved_color = "blue" if r.status == 200 else None
    r = api("GET", "/devices", token=ui)
    c.expect(r.status == 200 and "devices" in (r.json or {}), f"UI token GET /devices: {r!r}")
    r = api("POST", "/devices", body={"name": "x", "type": "sensor"}, token=ui)
    c.expect(is_error(r, 403), f"UI token POST /devices: {r!r}")
    r = api("GET", "/modules/pub/config", token=ui)
    c.expect(is_error(r, 403), f"UI token reads another module's config: {r!r}")
    r = api("POST", "/modules/pub/config", body={"key": "a", "value": 1}, token=ui)
    c.expect(is_error(r, 403), f"UI token writes another module's config: {r!r}")
    r = api("POST", "/events/publish", body={"type": "test.ui", "payload": {}}, token=ui)
    c.expect(is_error(r, 403), f"UI token publishes: {r!r}")
    r = api("GET", "/modules", token=ui)
    c.expect(is_error(r, 403), f"UI token lists modules: {r!r}")
    c.done()


@test
def test_08_module_lifecycle_events():
    c = Check()
    rx("/reset", "POST", {})
    # A receiver itself subscribed to module.*: the core must not queue its own
    # module.unloaded for it (nobody would ever take it).
    install_receiver("lifecycle", ["module.*"])

    def of(type_):
        return [e for e in received()["events"] if e["type"] == type_
                and e["payload"].get("module_name") == "lifecycle"]

    got = wait_for(lambda: of("module.loaded"), 10)
    if c.expect(got, f"module.loaded for lifecycle never arrived: {received()['events']}"):
        c.expect(got[0]["payload"] == {"module_id": "lifecycle", "module_name": "lifecycle",
                                       "version": "1.0.0"}, f"module.loaded payload: {got[0]}")
        c.expect(got[0]["source"] == "core", f"module.loaded source: {got[0]}")
    r = admin("DELETE", "/modules/lifecycle")
    c.expect(r.status == 200, f"uninstall lifecycle: {r!r}")
    got = wait_for(lambda: of("module.unloaded"), 10)
    if c.expect(got, f"module.unloaded for lifecycle never arrived: {received()['events']}"):
        c.expect(got[0]["payload"] == {"module_id": "lifecycle", "module_name": "lifecycle",
                                       "version": "1.0.0"}, f"module.unloaded payload: {got[0]}")
    left = deliveries("lifecycle", "pending")
    c.expect(not left, f"deliveries left pending for the uninstalled module: {left}")
    r = admin("GET", "/events/subscriptions?module=lifecycle")
    c.expect(r.status == 200 and r.json["subscriptions"] == [],
             f"lifecycle's subscriptions after its uninstall: {r!r}")
    c.expect(received()["bad"] == 0, "the receiver counted a bad signature")
    c.done()


def attempts_of(event_id, name="receiver"):
    return [a for a in received(name)["attempts"] if a["id"] == event_id]


@test
def test_09_failure_answers():
    c = Check()
    rx("/reset", "POST", {})

    # 503: retried with growing attempt numbers, delivered once it answers 200.
    rx_mode(status=503)
    eid = publish("pub", "test.f503")
    tries = wait_for(lambda: (lambda a: a if len(a) >= 3 else None)(attempts_of(eid)), 10)
    c.expect(tries and all(a["status"] == 503 for a in tries)
             and [int(a["attempt"]) for a in tries] == list(range(1, len(tries) + 1)),
             f"503: attempts seen by the receiver: {tries}")
    d1 = delivery_of(eid)
    c.expect(d1 and d1["status"] == "pending" and d1["attempts"] >= 2
             and d1["last_status_code"] == 503 and "503" in d1["last_error"]
             and d1.get("next_attempt_at"), f"503: the delivery: {d1}")
    time.sleep(1.2)
    d2 = delivery_of(eid)
    c.expect(d1 and d2 and d2["attempts"] > d1["attempts"],
             f"503: attempts did not grow: {d1} -> {d2}")
    rx_mode(status=200)
    c.expect(wait_arrived(eid, 10), "503: never delivered after switching back to 200")
    d = wait_for(lambda: (lambda d: d if d and d["status"] == "delivered" else None)(
        delivery_of(eid)), 5)
    c.expect(d and d["last_error"] in ("", None), f"503: delivered record: {d}")

    # 429 with Retry-After: 1: the next attempt at least 1 s later.
    rx_mode(status=429, retry_after=1)
    eid = publish("pub", "test.f429")
    tries = wait_for(lambda: (lambda a: a if len(a) >= 2 else None)(attempts_of(eid)), 10)
    if c.expect(tries, f"429: no second attempt: {attempts_of(eid)}"):
        gap = tries[1]["t"] - tries[0]["t"]
        log(f"    429 Retry-After: 1 -> next attempt {gap:.3f} s later")
        c.expect(gap >= 0.99, f"429: the next attempt came {gap:.3f} s later (< 1 s)")
    rx_mode(status=200)
    c.expect(wait_arrived(eid, 10), "429: never delivered after switching back to 200")

    # 429 with Retry-After as an HTTP date 3 s ahead: capped at retry_cap_ms (1 s).
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    rx_mode(status=429, retry_after=when)
    eid = publish("pub", "test.f429date")
    tries = wait_for(lambda: (lambda a: a if len(a) >= 2 else None)(attempts_of(eid)), 10)
    if c.expect(tries, f"429 (date): no second attempt: {attempts_of(eid)}"):
        gap = tries[1]["t"] - tries[0]["t"]
        log(f"    429 Retry-After: {when} -> next attempt {gap:.3f} s later (cap 1 s)")
        c.expect(0.99 <= gap < 2.5, f"429 (date): the next attempt came {gap:.3f} s later")
    rx_mode(status=200)
    c.expect(wait_arrived(eid, 10), "429 (date): never delivered after switching back to 200")

    # 301: a failure, recorded, never followed.
    rx_mode(status=301)
    eid = publish("pub", "test.f301")

    def redirect_recorded():
        d = delivery_of(eid)
        return d if d and d["last_status_code"] == 301 else None

    d = wait_for(redirect_recorded, 10)
    c.expect(d and "redirects are not followed" in d["last_error"] and d["status"] == "pending",
             f"301: the delivery: {d}")
    time.sleep(0.5)
    rx_mode(status=200)
    c.expect(wait_arrived(eid, 10), "301: never delivered after switching back to 200")
    stray = received()["stray"]
    c.expect(not stray, f"301: the receiver saw requests elsewhere (redirect followed?): {stray}")

    # A receiver slower than timeout_ms: a failure, retried.
    rx_mode(status=200, delay=3)
    eid = publish("pub", "test.ftimeout")

    def timed_out():
        d = delivery_of(eid)
        return d if d and d["attempts"] >= 2 else None

    d = wait_for(timed_out, 10)
    c.expect(d and "timeout" in d["last_error"].lower() and d["status"] == "pending",
             f"timeout: the delivery: {d}")
    rx_mode(status=200)
    d = wait_for(lambda: (lambda d: d if d and d["status"] == "delivered" else None)(
        delivery_of(eid)), 15)
    c.expect(d, f"timeout: never delivered after the delay was removed: {delivery_of(eid)}")

    # 410: the delivery is dead and the subscription removed.
    subs = subscriptions("receiver")
    main = [s for s in subs if s["event_types"] == MAIN_PATTERNS]
    require(main, f"410: receiver's main subscription is missing: {subs}")
    rx_mode(status=410)
    eid = publish("pub", "test.f410")
    d = wait_for(lambda: (lambda d: d if d and d["status"] == "dead" else None)(
        delivery_of(eid)), 10)
    c.expect(d and "410" in d["last_error"], f"410: the delivery: {d}")
    c.expect(wait_for(lambda: all(s["subscription_id"] != main[0]["subscription_id"]
                                  for s in subscriptions("receiver")), 5),
             f"410: the subscription is still listed: {subscriptions('receiver')}")
    rx_mode(status=200)
    again = rx("/subscribe", "POST", {"event_types": MAIN_PATTERNS})
    c.expect(again.get("subscription_id") not in (None, main[0]["subscription_id"]),
             f"410: re-subscribing: {again}")
    eid = publish("pub", "test.after410")
    c.expect(wait_arrived(eid), "an event after re-subscribing never arrived")
    c.expect(received()["bad"] == 0, "the receiver counted a bad signature")
    c.done()


@test
def test_10_exhausted_dead_letter_retry():
    """receiver2 answered 401 to exh.one and exh.two since test_02: after max_age they
    are dead, with webhook.exhausted events; a retry brings them back."""
    require(len(C.exh) == 2, "prerequisite: test_02 did not publish the exh events")
    c = Check()
    (one, t_one), (two, _) = C.exh

    def dead():
        got = {d["event_id"]: d for d in deliveries("receiver2", "dead")}
        return got if one in got and two in got else None

    timeout = max(5.0, MAX_AGE_S + 15 - (time.monotonic() - t_one))
    dead_ones = wait_for(dead, timeout, 0.25)
    require(dead_ones, f"exh events not dead within {MAX_AGE_S} s + margin: "
            f"{deliveries('receiver2')}")
    d = dead_ones[one]
    log(f"    exh.one dead after {d['attempts']} attempts: {d['last_error']}")
    c.expect(d["attempts"] >= 3 and "401" in d["last_error"] and "gave up" in d["last_error"],
             f"the dead delivery: {d}")
    seen = attempts_of(one, "receiver2")
    c.expect(len(seen) >= 3 and all(a["status"] == 401 for a in seen),
             f"receiver2's record of the attempts: {seen}")
    c.expect(received("receiver2")["bad"] == 0, "receiver2 counted a bad signature")
    failed = {d["event_id"] for d in deliveries("receiver2", "failed")}
    c.expect({one, two} <= failed, f"status=failed does not list them: {failed}")
    r = admin("GET", "/events/deliveries?status=bogus")
    c.expect(is_error(r, 400), f"status=bogus: {r!r}")

    r = admin("GET", "/events/recent?limit=1024")
    exhausted = [e for e in (r.json or {}).get("events", []) if e["type"] == "webhook.exhausted"]
    mine = [e for e in exhausted if e["payload"].get("delivery_id") == d["delivery_id"]]
    if c.expect(mine, f"no webhook.exhausted for {d['delivery_id']} in /events/recent: "
                f"{exhausted}"):
        p = mine[0]["payload"]
        c.expect(p.get("event_id") == one and p.get("module") == "receiver2"
                 and p.get("event_type") == "exh.one" and mine[0]["source"] == "core",
                 f"webhook.exhausted: {mine[0]}")
    r = as_module("pub", "GET", "/events/recent")
    c.expect(is_error(r, 403), f"a module reads /events/recent: {r!r}")

    # Only its own deliveries for a module; nobody else's retry.
    r = as_module("pub", "GET", "/events/deliveries")
    c.expect(r.status == 200 and all(x["module"] == "pub" for x in r.json["deliveries"]),
             f"pub's deliveries: {r!r}")
    r = as_module("pub", "POST", f"/events/deliveries/{d['delivery_id']}/retry")
    c.expect(is_error(r, 404), f"pub retries receiver2's delivery: {r!r}")
    r = admin("POST", "/events/deliveries/00000000-0000-4000-8000-000000000000/retry")
    c.expect(is_error(r, 404), f"retry an unknown delivery: {r!r}")

    # modctl deliveries: the table and its filters.
    short = d["delivery_id"][:8]
    p = modctl("deliveries", "--failed")
    c.expect(p.returncode == 0 and short in p.stdout and "receiver2" in p.stdout
             and "exh.one" in p.stdout and "dead" in p.stdout and "gave up" in p.stdout,
             f"modctl deliveries --failed: {show(p)}")
    header = p.stdout.splitlines()[0].split() if p.stdout else []
    c.expect(header == ["ID", "MODULE", "EVENT", "STATUS", "ATTEMPTS", "LAST_ERROR"],
             f"modctl deliveries header: {header}")
    p = modctl("deliveries", "--pending", "--module", "receiver2")
    c.expect(p.returncode == 0 and short not in p.stdout, f"modctl deliveries --pending: {show(p)}")
    p = modctl("--json", "deliveries", "--failed", "--module", "receiver2")
    try:
        listed = {x["delivery_id"] for x in json.loads(p.stdout)["deliveries"]}
        c.expect(p.returncode == 0 and d["delivery_id"] in listed,
                 f"modctl --json deliveries: {show(p)}")
    except (ValueError, KeyError, TypeError):
        c.expect(False, f"modctl --json deliveries is not the server's JSON: {show(p)}")
    p = modctl("deliveries", "--module", "no/such")
    c.expect(p.returncode == 2, f"modctl deliveries --module no/such: {show(p)}")
    p = modctl("deliveries", "--failed", "--delivered")
    c.expect(p.returncode == 2, f"modctl deliveries --failed --delivered: {show(p)}")
    p = modctl("deliveries", "retry")
    c.expect(p.returncode == 2, f"modctl deliveries retry (no id): {show(p)}")
    p = modctl("deliveries", "retry", "zz!")
    c.expect(p.returncode == 2, f"modctl deliveries retry zz!: {show(p)}")
    p = modctl("deliveries", "retry", "00000000-0000-4000-8000-000000000000")
    c.expect(p.returncode == 1, f"modctl deliveries retry (unknown id): {show(p)}")

    # The API retry: back to pending, delivered once the receiver answers 200.
    r = admin("POST", f"/events/deliveries/{d['delivery_id']}/retry")
    c.expect(r.status == 200 and r.json.get("status") == "pending" and r.json["attempts"] == 0,
             f"POST retry: {r!r}")
    rx_mode("receiver2", status=200)
    c.expect(wait_arrived(one, 10, "receiver2"), "exh.one never arrived after the retry")
    got = wait_for(lambda: (lambda x: x if x and x["status"] == "delivered" else None)(
        delivery_of(one, "receiver2")), 5)
    c.expect(got, f"exh.one is not delivered after the retry: {delivery_of(one, 'receiver2')}")
    r = admin("POST", f"/events/deliveries/{d['delivery_id']}/retry")
    c.expect(is_error(r, 409), f"retry a delivered one: {r!r}")

    # modctl deliveries retry with the short id from the table.
    d2 = dead_ones[two]
    p = modctl("deliveries", "retry", d2["delivery_id"][:8])
    c.expect(p.returncode == 0 and d2["delivery_id"] in p.stdout and "pending" in p.stdout,
             f"modctl deliveries retry SHORT: {show(p)}")
    c.expect(wait_arrived(two, 10, "receiver2"), "exh.two never arrived after modctl's retry")
    # (the receiver records it before it answers: wait for the core to see the answer)
    got = wait_for(lambda: (lambda x: x if x and x["status"] == "delivered" else None)(
        delivery_of(two, "receiver2")), 5)
    c.expect(got, f"exh.two is not delivered after the retry: {delivery_of(two, 'receiver2')}")
    p = modctl("deliveries", "--delivered", "--module", "receiver2")
    c.expect(p.returncode == 0 and d2["delivery_id"][:8] in p.stdout,
             f"modctl deliveries --delivered after the retry: {show(p)}")
    p = modctl("deliveries", "retry", d2["delivery_id"])
    c.expect(p.returncode == 1 and "ALREADY_DELIVERED" in p.stderr,
             f"modctl deliveries retry of a delivered one: {show(p)}")

    r = admin("DELETE", "/modules/receiver2")
    c.expect(r.status == 200, f"uninstall receiver2: {r!r}")
    r = admin("GET", "/events/subscriptions?module=receiver2")
    c.expect(r.status == 200 and r.json["subscriptions"] == [],
             f"receiver2's subscriptions after its uninstall: {r!r}")
    c.done()


def publish_bulk(run, publisher, acked, stop_after=None):
    """Publishes test.n {seq, run} for seq 0..BULK-1 in order; appends (seq, event id)
    to acked for each 201. Stops at the first error (the core killed)."""
    for seq in range(BULK):
        try:
            status, body = publisher.publish("test.n", {"seq": seq, "run": run})
        except (OSError, http.client.HTTPException):
            return
        if status != 201:
            return
        acked.append((seq, body["event_id"]))


def wait_bulk(run, seqs, timeout):
    """Waits until every seq of the run arrived at the receiver; returns the receiver's
    events."""
    want = set(seqs)

    def complete():
        events = received()["events"]
        have = {e["seq"] for e in events
                if e["type"] == "test.n" and e["payload"].get("run") == run}
        return events if want <= have else None

    got = wait_for(complete, timeout, 0.25)
    return got or received()["events"]


def process_tree(pid):
    """pid and all its descendants (the module runs below its launcher and bubblewrap)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def signal_tree(pid, sig):
    """Sends sig to a module's whole process tree (SIGSTOP must reach the module itself,
    not only its launcher)."""
    for p in process_tree(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


@test
def test_11_order_1000_while_stopped():
    c = Check()
    rx("/reset", "POST", {})
    pid = module_record("receiver")["pid"]
    require(pid > 0 and pid_alive(pid), f"receiver pid {pid}")
    publisher = Publisher(C.tokens["pub"])
    acked = []
    signal_tree(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        publish_bulk("d", publisher, acked)
        publish_s = time.monotonic() - t0
        # Stopped for several webhook timeouts (1 s): the head fails and is retried.
        time.sleep(max(0.0, 3.5 - publish_s))
    finally:
        signal_tree(pid, signal.SIGCONT)
    publisher.close()
    t1 = time.monotonic()
    require(len(acked) == BULK, f"only {len(acked)} of {BULK} publishes were acknowledged")
    events = wait_bulk("d", [s for s, _ in acked], 60)
    drain_s = time.monotonic() - t1
    first, dups = first_arrivals(events, "d")
    missing = [s for s, _ in acked if s not in first]
    head = [e for e in events if e["type"] == "test.n" and e["seq"] == 0]
    log(f"    published {BULK} in {publish_s:.2f} s ({BULK / publish_s:.0f}/s) with the receiver "
        f"stopped; drained in {drain_s:.2f} s after SIGCONT; {dups} duplicate(s); seq 0 "
        f"arrived with attempt number(s) {[e['attempt'] for e in head]}")
    c.expect(not missing, f"{len(missing)} acknowledged events never arrived: {missing[:20]}"
             + (explain_missing(missing, acked) if missing else ""))
    problems = order_problems(first, [s for s, _ in acked])
    c.expect(not problems, f"out of order: {problems[:10]}")
    c.expect(received()["bad"] == 0, "the receiver counted a bad signature")
    ids = {e["id"] for e in events if e["type"] == "test.n"}
    c.expect(ids == {i for _, i in acked}, "the receiver got ids that were never acknowledged")
    c.done()


@test
def test_11b_order_while_failing():
    """While the receiver answers 503 the head of the queue is retried; nothing behind
    it may overtake it once the receiver answers again."""
    c = Check()
    rx("/reset", "POST", {})
    rx_mode(status=503)
    publisher = Publisher(C.tokens["pub"])
    acked = []
    try:
        for seq in range(200):
            status, body = publisher.publish("test.n", {"seq": seq, "run": "f"})
            require(status == 201, f"publish seq {seq}: {status} {body}")
            acked.append((seq, body["event_id"]))
        publisher.close()
        require(wait_for(lambda: len(received()["attempts"]) >= 4, 10),
                f"too few attempts while answering 503: {received()['attempts']}")
    finally:
        rx_mode(status=200)
    want = {s for s, _ in acked}
    events = wait_for(lambda: (lambda ev: ev if want <= {e["seq"] for e in ev if e["type"] ==
                                                          "test.n"} else None)(
        received()["events"]), 30) or received()["events"]
    first, dups = first_arrivals(events, "f")
    failed = [a for a in received()["attempts"] if a["status"] == 503]
    log(f"    {len(failed)} attempt(s) answered 503, at event(s) "
        f"{sorted({a['id'][:8] for a in failed})}; {dups} duplicate(s)")
    c.expect(not [s for s in want if s not in first], "some events never arrived")
    c.expect(not order_problems(first, [s for s, _ in acked]),
             f"out of order: {order_problems(first, [s for s, _ in acked])[:10]}")
    c.expect(all(a["id"] == acked[0][1] for a in failed),
             f"events behind the failing head were attempted: {failed[:5]}")
    c.done()


@test
def test_12_kill9_loses_no_acknowledged_event():
    c = Check()
    require(wait_for(lambda: not deliveries("receiver", "pending"), 20),
            f"receiver still has pending deliveries: {deliveries('receiver', 'pending')[:3]}")
    rx("/reset", "POST", {})
    old_pid = module_record("receiver")["pid"]
    require(old_pid > 0 and pid_alive(old_pid), f"receiver pid {old_pid}")
    publisher = Publisher(C.tokens["pub"])
    acked = []
    tail = Tail()  # modctl events tail -f must outlive the core's restart
    stopped = process_tree(old_pid)
    signal_tree(old_pid, signal.SIGSTOP)
    thread = threading.Thread(target=publish_bulk, args=("e", publisher, acked))
    try:
        thread.start()
        require(wait_for(lambda: len(acked) >= BULK // 2, 60, 0.001),
                f"only {len(acked)} publishes acknowledged")
        C.daemon.kill9()
        killed_at = len(acked)
        thread.join(30)
        publisher.close()
    finally:
        for p in stopped:  # the tree as it was: after the kill its parents are gone
            if pid_alive(p):
                os.kill(p, signal.SIGCONT)
    survived = not wait_for(lambda: not pid_alive(old_pid), 5)
    if survived:
        log(f"    the old receiver (pid {old_pid}) outlived the kill -9 of the core: killing it")
        os.kill(old_pid, signal.SIGKILL)
    c.expect(not survived, f"the receiver process {old_pid} survived the core's kill -9")
    log(f"    kill -9 after {killed_at} acknowledged publishes; {len(acked)} acknowledged in all")

    t0 = time.monotonic()
    C.daemon.start()
    rec = wait_for(lambda: (lambda m: m if m["status"] == "RUNNING" and m["pid"] != old_pid
                            else None)(module_record("receiver")), 20)
    require(rec, f"the receiver was not restarted: {module_record('receiver')}")
    events = wait_bulk("e", [s for s, _ in acked], 60)
    recovered_s = time.monotonic() - t0
    first, dups = first_arrivals(events, "e")
    missing = [s for s, _ in acked if s not in first]
    extra = len([s for s in first if s not in {a for a, _ in acked}])
    log(f"    after the restart all acknowledged events arrived in {recovered_s:.2f} s; "
        f"{dups} duplicate(s), {extra} unacknowledged event(s) delivered too")
    c.expect(not missing, f"{len(missing)} of {len(acked)} acknowledged events were lost: "
             f"{missing[:20]}" + (explain_missing(missing, acked) if missing else ""))
    c.expect(not order_problems(first, [s for s, _ in acked]),
             f"out of order: {order_problems(first, [s for s, _ in acked])[:10]}")
    c.expect(received()["bad"] == 0, "the receiver counted a bad signature")
    c.expect(wait_subscribed("receiver", MAIN_PATTERNS), "the receiver did not re-subscribe")

    # Devices and saved config survive too.
    if C.survivor:
        r = as_module("pub", "GET", f"/devices/{C.survivor}")
        c.expect(r.status == 200 and r.json.get("state") == {"t": 21.5}
                 and r.json.get("module_id") == "pub", f"the survivor device: {r!r}")
    if C.saved_color:
        r = as_module("cfgmod", "GET", "/modules/cfgmod/config")
        c.expect(r.status == 200 and r.json["config"] == {"color": C.saved_color, "size": 2},
                 f"cfgmod's config after the restart: {r!r}")
    # New events flow again, and the tail -f started before the kill shows them.
    eid = publish("pub", "test.after_restart")
    c.expect(wait_arrived(eid), "an event published after the restart never arrived")
    try:
        c.expect(wait_for(lambda: eid in tail.ids(), 5),
                 f"modctl events tail -f did not follow the restarted core: exit "
                 f"{tail.proc.poll()}, stderr {tail.stderr()!r}")
    finally:
        tail.stop()
    c.done()


class Tail:
    """modctl --json events tail -f -n N running in the background; its lines kept."""

    def __init__(self, n=1):
        argv = [os.path.join(C.build, "modctl"), "--data-dir", C.data,
                "--url", f"http://127.0.0.1:{C.daemon.port}", "--json", "events", "tail", "-f",
                "-n", str(n)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines, self.errors = [], []
        for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=lambda s=stream, i=into: [i.append(x) for x in s],
                             daemon=True).start()

    def ids(self):
        return [json.loads(line)["id"] for line in list(self.lines)]

    def stderr(self):
        return "".join(self.errors)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(5)


@test
def test_13_modctl_events_tail():
    c = Check()
    marker = "m%08x" % random.getrandbits(32)
    ids = [publish("pub", "test.tail", {"k": k, "marker": marker}) for k in range(3)]
    p = modctl("events", "tail", "-n", "3")
    lines = p.stdout.splitlines()
    c.expect(p.returncode == 0 and len(lines) == 3, f"modctl events tail -n 3: {show(p)}")
    for k, line in enumerate(lines[:3]):
        parts = line.split(" ", 3)
        ok = (len(parts) == 4 and ISO_Z.match(parts[0]) and parts[1] == "test.tail"
              and parts[2] == "pub")
        try:
            ok = ok and json.loads(parts[3]) == {"k": k, "marker": marker}
        except ValueError:
            ok = False
        c.expect(ok, f"modctl events tail line {k}: {line!r}")
    p = modctl("--json", "events", "tail", "-n", "2")
    try:
        got = [e["id"] for e in json.loads(p.stdout)["events"]]
        c.expect(p.returncode == 0 and got == ids[1:], f"modctl --json events tail -n 2: {show(p)}")
    except (ValueError, KeyError, TypeError):
        c.expect(False, f"modctl --json events tail is not JSON: {show(p)}")
    p = modctl("events", "tail")
    c.expect(p.returncode == 0 and 3 <= len(p.stdout.splitlines()) <= 20,
             f"modctl events tail (default 20): {show(p)}")

    # -f: the last event, then new ones as they come.
    tail = Tail()
    try:
        c.expect(wait_for(lambda: len(tail.lines) >= 1, 5),
                 "modctl events tail -f printed nothing")
        c.expect(tail.ids()[:1] == ids[-1:], f"tail -f first line: {tail.lines[:1]}")
        fresh = [publish("pub", "test.tailf", {"marker": marker, "k": k}) for k in range(2)]
        c.expect(wait_for(lambda: len(tail.lines) >= 3, 5),
                 f"tail -f did not print the new events: {tail.lines}")
        c.expect(tail.ids()[1:3] == fresh, f"tail -f printed {tail.ids()}, published {fresh}")
        c.expect(tail.proc.poll() is None, f"tail -f exited: {tail.proc.poll()}")
    finally:
        tail.stop()
    p = modctl("events", "tail", "-n", "0")
    c.expect(p.returncode == 2, f"modctl events tail -n 0: {show(p)}")
    p = modctl("events", "head")
    c.expect(p.returncode == 2, f"modctl events head: {show(p)}")
    p = modctl("events")
    c.expect(p.returncode == 2, f"modctl events: {show(p)}")
    p = modctl("list", "-f")
    c.expect(p.returncode == 2, f"modctl list -f: {show(p)}")
    p = modctl("events", "tail", url=f"http://127.0.0.1:{free_port()}")
    c.expect(p.returncode == 3, f"modctl events tail against a closed port: {show(p)}")
    p = modctl("--token", "x" * 64, "events", "tail")
    c.expect(p.returncode == 1, f"modctl events tail with a wrong token: {show(p)}")
    c.expect(C.admin not in p.stdout + p.stderr, "modctl printed the admin token")
    c.done()


if __name__ == "__main__":
    sys.exit(harness.run(__doc__, CONFIG, tmp_prefix="modcore-events-",
                         required=("modcored", "modctl", "modcore-launch"),
                         build_help="the build dir (modcored, modctl)", k_any=True))
