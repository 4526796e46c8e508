#!/usr/bin/env python3
"""Integration test of per-module storage: the real modcored, real module processes,
real HTTP.

    python3 tests/integration/test_storage.py --build <build dir> [-k SUBSTRING] [--keep]

Starts build/modcored on a free port with a temporary data dir and a config with a small
[storage] quota, installs three copies of the test fixture `probe`
(tests/fixtures/probe: it reveals its own token so the test can act as the module) built
into ZIPs here: store-a and store-b with the storage.rw permission, no-store without it.
Then exercises every /api/v1/storage route with the modules' tokens: values of every
JSON type, isolation between modules, list paging, batches, quotas (507, nothing partial
stored), keys with '/' and spaces percent-encoded, refusals (400/403/404/405/413),
persistence across a core restart, and deletion of the database on uninstall.

The tests run in order and share state (the daemon, the modules, their tokens).
Last line: "N passed, M failed"; exit status 1 if anything failed. Standard library only.
"""
import json
import os
import sys
import urllib.parse

import harness
from harness import (Check, admin, api, is_error, module_get, pick_module_port, probe_zip,
                     require, test, wait_for)

MAX_KEYS = 20
MAX_BYTES = 4096

CONFIG = harness.sandbox_config() + f"""
[rate_limit]
rate = 5000
burst = 5000

[storage]
max_keys = {MAX_KEYS}
max_bytes = {MAX_BYTES}
max_open = 2
"""


class Ctx(harness.Ctx):
    """State shared by the tests, in order (the daemon, its dirs and admin token: see
    harness.Ctx)."""

    api_timeout = 60
    admin_wait = 1
    resp_limit = 400
    ports = {}  # module name -> port
    tokens = {}  # module name -> its token


C = harness.use(Ctx())


# --- helpers ------------------------------------------------------------------------------

def enc(key):
    """A key percent-encoded for the path: every byte outside unreserved characters, and
    '.' too (a "." or ".." segment would be removed from the path before routing)."""
    return urllib.parse.quote(key, safe="").replace(".", "%2E")


def put(module, key, value):
    return api("PUT", "/storage/" + enc(key), body={"value": value}, token=C.tokens[module])


def get(module, key):
    return api("GET", "/storage/" + enc(key), token=C.tokens[module])


def delete(module, key):
    return api("DELETE", "/storage/" + enc(key), token=C.tokens[module])


def usage(module):
    r = api("GET", "/storage/usage", token=C.tokens[module])
    require(r.status == 200 and r.json, f"GET /storage/usage as {module}: {r!r}")
    return r.json


def listing(module, **query):
    qs = urllib.parse.urlencode(query)
    return api("GET", "/storage" + ("?" + qs if qs else ""), token=C.tokens[module])


def install(name, permissions):
    """Installs a probe copy and learns its token."""
    port = pick_module_port()
    r = admin("POST", "/modules/install", body=probe_zip(name, port, permissions=permissions),
              content_type="application/zip")
    require(r.status == 201, f"install of {name} on port {port}: {r!r}")
    got = module_get(port, "/token")
    require(got and got[0] == 200 and got[1].get("token"), f"{name} GET /token: {got}")
    C.ports[name] = port
    C.tokens[name] = got[1]["token"]


def db_dir(name):
    return os.path.join(C.data, "modules", name, "db")


# --- tests --------------------------------------------------------------------------------

@test
def test_01_install():
    install("store-a", ["storage.rw"])
    install("store-b", ["storage.rw", "device.read"])
    install("no-store", ["device.read"])
    c = Check()
    c.expect(len(set(C.tokens.values())) == 3, "the three modules share a token")
    c.done()


@test
def test_02_put_get_delete():
    require("store-a" in C.tokens, "prerequisite: store-a not installed")
    c = Check()
    values = {
        "string": "hello",
        "number": 42,
        "real": -1.5,
        "true": True,
        "null": None,
        "array": [1, "two", {"three": 3}],
        "object": {"nested": {"deep": [None, False]}, "unicode": "h\u00e9llo \u2603"},
    }
    for key, value in values.items():
        r = put("store-a", key, value)
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        c.expect(r.status == 200 and r.json == {"key": key, "bytes": len(compact)},
                 f"PUT {key}: {r!r} (expected bytes {len(compact)})")
    for key, value in values.items():
        r = get("store-a", key)
        c.expect(r.status == 200 and r.json == {"key": key, "value": value},
                 f"GET {key}: {r!r}")
    r = put("store-a", "string", "changed")
    c.expect(r.status == 200, f"overwrite: {r!r}")
    c.expect(get("store-a", "string").json == {"key": "string", "value": "changed"},
             "overwrite not visible")
    r = delete("store-a", "null")
    c.expect(r.status == 204 and r.body == b"", f"DELETE null: {r!r}")
    r = get("store-a", "null")
    c.expect(is_error(r, 404, "KEY_NOT_FOUND"), f"GET after DELETE: {r!r}")
    r = delete("store-a", "null")
    c.expect(is_error(r, 404, "KEY_NOT_FOUND"), f"second DELETE: {r!r}")
    u = usage("store-a")
    c.expect(u.get("keys") == 6 and u.get("max_keys") == MAX_KEYS
             and u.get("max_bytes") == MAX_BYTES and isinstance(u.get("bytes"), int),
             f"usage: {u}")
    c.done()


@test
def test_03_isolation():
    require("store-b" in C.tokens, "prerequisite: store-b not installed")
    c = Check()
    c.expect(put("store-a", "secret", "A's").status == 200, "PUT secret as A")
    r = get("store-b", "secret")
    c.expect(is_error(r, 404, "KEY_NOT_FOUND"), f"B reads A's key: {r!r}")
    r = delete("store-b", "secret")
    c.expect(is_error(r, 404), f"B deletes A's key: {r!r}")
    r = listing("store-b")
    c.expect(r.status == 200 and r.json == {"items": [], "next": None},
             f"B's listing before it stored anything: {r!r}")
    c.expect(put("store-b", "secret", "B's").status == 200, "PUT secret as B")
    c.expect(get("store-a", "secret").json.get("value") == "A's", "A's value changed by B")
    c.expect(get("store-b", "secret").json.get("value") == "B's", "B's value")
    r = listing("store-b")
    c.expect(r.status == 200 and [i["key"] for i in r.json["items"]] == ["secret"],
             f"B's listing: {r!r}")
    c.expect(usage("store-b")["keys"] == 1, f"B's usage: {usage('store-b')}")
    # The module name comes from the token: no request names a database.
    r = api("GET", "/storage/secret?module=store-a", token=C.tokens["store-b"])
    c.expect(r.status == 200 and r.json.get("value") == "B's",
             f"?module=store-a as B: {r!r}")
    c.expect(os.path.isdir(db_dir("store-a")) and os.path.isdir(db_dir("store-b")),
             "each module's database is at <data>/modules/<name>/db")
    c.done()


@test
def test_04_encoded_keys():
    require("store-a" in C.tokens, "prerequisite: store-a not installed")
    c = Check()
    keys = ["dir/sub/name", "with space", "a/b c/d", "100%", "q?x=1&y#z", "..", "../up",
            "+plus", "~tilde!*'()", "usage", "batch", " "]
    for key in keys:
        r = put("store-a", key, {"k": key})
        c.expect(r.status == 200 and r.json.get("key") == key, f"PUT {key!r} as {enc(key)}: {r!r}")
        if key == "usage":
            continue  # GET /storage/usage is the usage route: see below
        r = get("store-a", key)
        c.expect(r.status == 200 and r.json == {"key": key, "value": {"k": key}},
                 f"GET {key!r} as {enc(key)}: {r!r}")
    # "usage" as a key: the literal path is the usage route, any encoding the key.
    r = api("GET", "/storage/usage", token=C.tokens["store-a"])
    c.expect(r.status == 200 and "max_keys" in (r.json or {}), f"GET /storage/usage: {r!r}")
    r = api("GET", "/storage/%75sage", token=C.tokens["store-a"])
    c.expect(r.status == 200 and r.json == {"key": "usage", "value": {"k": "usage"}},
             f"GET /storage/%75sage: {r!r}")
    # A prefix with '/' lists exactly those keys.
    r = listing("store-a", prefix="dir/")
    c.expect(r.status == 200 and [i["key"] for i in r.json["items"]] == ["dir/sub/name"],
             f"list prefix=dir/: {r!r}")
    r = listing("store-a", prefix="a/b c/")
    c.expect(r.status == 200 and [i["key"] for i in r.json["items"]] == ["a/b c/d"],
             f"list prefix='a/b c/': {r!r}")
    for key in keys:
        r = delete("store-a", key)
        c.expect(r.status == 204, f"DELETE {key!r}: {r!r}")
    c.done()


@test
def test_05_list_paging():
    require("store-b" in C.tokens, "prerequisite: store-b not installed")
    c = Check()
    r = api("POST", "/storage/batch", token=C.tokens["store-b"],
            body={"put": {f"page/{i:02d}": i for i in range(12)}})
    c.expect(r.status == 200 and r.json == {"put": 12, "deleted": 0}, f"batch of 12: {r!r}")
    seen, after, pages = [], None, 0
    while pages < 10:
        query = {"prefix": "page/", "limit": 5}
        if after:
            query["after"] = after
        r = listing("store-b", **query)
        require(r.status == 200, f"list page {pages}: {r!r}")
        pages += 1
        seen += r.json["items"]
        after = r.json["next"]
        if after is None:
            break
        c.expect(after == r.json["items"][-1]["key"], f"next is not the last key: {r.json}")
    c.expect(pages == 3, f"12 keys in pages of 5 took {pages} pages")
    c.expect(seen == [{"key": f"page/{i:02d}", "value": i} for i in range(12)],
             f"paged items: {seen}")
    r = listing("store-b")
    c.expect(r.status == 200 and len(r.json["items"]) == 13 and r.json["next"] is None,
             f"list without arguments: {r!r}")
    for bad in ("0", "1001", "-1", "x", ""):
        r = listing("store-b", limit=bad)
        c.expect(is_error(r, 400, "INVALID_LIMIT"), f"limit={bad!r}: {r!r}")
    r = listing("store-b", prefix="bad\x01")
    c.expect(is_error(r, 400, "INVALID_PREFIX"), f"prefix with a control char: {r!r}")
    r = api("POST", "/storage/batch", token=C.tokens["store-b"],
            body={"delete": [f"page/{i:02d}" for i in range(12)] + ["page/99"]})
    c.expect(r.status == 200 and r.json == {"put": 0, "deleted": 12}, f"batch delete: {r!r}")
    c.done()


@test
def test_06_batch():
    require("store-a" in C.tokens, "prerequisite: store-a not installed")
    c = Check()
    tok = C.tokens["store-a"]
    r = api("POST", "/storage/batch", token=tok,
            body={"put": {"b/1": 1, "b/2": [2], "secret": "replaced"}, "delete": ["number"]})
    c.expect(r.status == 200 and r.json == {"put": 3, "deleted": 1}, f"batch: {r!r}")
    c.expect(get("store-a", "b/2").json.get("value") == [2], "b/2 after the batch")
    c.expect(get("store-a", "secret").json.get("value") == "replaced", "secret after the batch")
    c.expect(get("store-a", "number").status == 404, "number still there after the batch")
    before = usage("store-a")
    # Bad batches: nothing of them is stored.
    bad = [
        ({"put": {"ok": 1, "bad\u0001key": 2}}, 400, "INVALID_KEY"),
        ({"put": {"ok": 1}, "delete": ["ok"]}, 400, "INVALID_BATCH"),
        ({"put": {"ok": 1}, "delete": [5]}, 400, "INVALID_KEY"),
        ({"put": [1, 2]}, 400, "INVALID_BATCH"),
        ({"put": {"ok": 1}, "extra": True}, 400, "INVALID_BATCH"),
        ({"put": {"ok": 1, "big": "x" * 70000}}, 413, "VALUE_TOO_LARGE"),
        ({"delete": ["k"] * 1001}, 413, "BATCH_TOO_LARGE"),
    ]
    for body, status, code in bad:
        r = api("POST", "/storage/batch", token=tok, body=body)
        c.expect(is_error(r, status, code), f"batch {str(body)[:60]}: {r!r}, expected {status} {code}")
    r = api("POST", "/storage/batch", token=tok, body="{not json", content_type="application/json")
    c.expect(is_error(r, 400, "INVALID_JSON"), f"batch of bad JSON: {r!r}")
    c.expect(get("store-a", "ok").status == 404, "a key of a refused batch was stored")
    c.expect(usage("store-a") == before, f"usage changed by refused batches: {usage('store-a')}")
    c.done()


@test
def test_07_quota():
    require("store-b" in C.tokens, "prerequisite: store-b not installed")
    c = Check()
    tok = C.tokens["store-b"]
    start = usage("store-b")
    # Bytes: a value larger than what is left.
    left = MAX_BYTES - start["bytes"]
    r = put("store-b", "huge", "x" * left)
    c.expect(is_error(r, 507, "QUOTA_EXCEEDED"), f"PUT of {left} bytes: {r!r}")
    if r.json:
        c.expect(str(MAX_BYTES) in r.json.get("detail", ""), f"507 detail: {r.json}")
        c.expect(r.json.get("usage") == start, f"507 usage {r.json.get('usage')} != {start}")
    c.expect(r.headers.get("Content-Type") == "application/json", "507 is not JSON")
    c.expect(get("store-b", "huge").status == 404, "the refused value was stored")
    # A batch over the byte quota: nothing stored, even its delete.
    half = "y" * (left // 2)
    r = api("POST", "/storage/batch", token=tok,
            body={"put": {"h1": half, "h2": half, "h3": "z"}, "delete": ["secret"]})
    c.expect(is_error(r, 507, "QUOTA_EXCEEDED"), f"batch over the byte quota: {r!r}")
    for key in ("h1", "h2", "h3"):
        c.expect(get("store-b", key).status == 404, f"{key} of a refused batch was stored")
    c.expect(get("store-b", "secret").json.get("value") == "B's", "a refused batch deleted")
    c.expect(usage("store-b") == start, f"usage after refusals: {usage('store-b')}")
    # Exactly up to the byte quota is fine; one more byte is not.
    key = "fill"
    exact = left - len(key) - 2  # the JSON string's quotes
    r = put("store-b", key, "f" * exact)
    c.expect(r.status == 200, f"PUT up to the byte quota: {r!r}")
    c.expect(usage("store-b")["bytes"] == MAX_BYTES, f"usage at the quota: {usage('store-b')}")
    r = put("store-b", "one", 1)
    c.expect(is_error(r, 507, "QUOTA_EXCEEDED"), f"PUT at a full quota: {r!r}")
    c.expect(delete("store-b", key).status == 204, "DELETE at a full quota")
    # Keys: fill up to max_keys with tiny values, then one more is refused.
    n = MAX_KEYS - usage("store-b")["keys"]
    r = api("POST", "/storage/batch", token=tok, body={"put": {f"k{i}": i for i in range(n)}})
    c.expect(r.status == 200, f"batch to {MAX_KEYS} keys: {r!r}")
    r = put("store-b", "one-too-many", 1)
    c.expect(is_error(r, 507, "QUOTA_EXCEEDED"), f"key {MAX_KEYS + 1}: {r!r}")
    c.expect(put("store-b", "k0", "overwrite").status == 200, "overwrite at the key quota")
    r = api("POST", "/storage/batch", token=tok, body={"put": {"new": 1}, "delete": ["k1"]})
    c.expect(r.status == 200, f"a batch that swaps a key at the key quota: {r!r}")
    c.expect(usage("store-b")["keys"] == MAX_KEYS, f"keys: {usage('store-b')}")
    # A value over 64 KiB is 413 whatever the quota.
    r = put("store-b", "k0", "v" * 65536)
    c.expect(is_error(r, 413, "VALUE_TOO_LARGE"), f"PUT of a 64 KiB + 2 value: {r!r}")
    # Clean up B's keys, leave "secret".
    keys = [i["key"] for i in listing("store-b", limit=1000).json["items"] if i["key"] != "secret"]
    r = api("POST", "/storage/batch", token=tok, body={"delete": keys})
    c.expect(r.status == 200 and usage("store-b")["keys"] == 1, f"cleanup: {r!r}")
    c.done()


@test
def test_08_refusals():
    require("no-store" in C.tokens, "prerequisite: modules not installed")
    c = Check()
    tok = C.tokens["store-a"]
    r = api("GET", "/storage/x", token=C.tokens["no-store"])
    c.expect(is_error(r, 403, "FORBIDDEN") and "storage.rw" in r.json["detail"],
             f"a module without storage.rw: {r!r}")
    for method, path in (("GET", "/storage"), ("PUT", "/storage/x"), ("DELETE", "/storage/x"),
                         ("POST", "/storage/batch"), ("GET", "/storage/usage")):
        r = api(method, path, token=C.tokens["no-store"], body={"value": 1} if method == "PUT" else None)
        c.expect(r.status == 403, f"{method} {path} without storage.rw: {r!r}")
        r = api(method, path, token=C.admin, body={"value": 1} if method == "PUT" else None)
        c.expect(is_error(r, 400, "NOT_A_MODULE"), f"{method} {path} with the admin token: {r!r}")
        r = api(method, path)
        c.expect(is_error(r, 401), f"{method} {path} without a token: {r!r}")
    bad_keys = ["%01", "a%00b", "%7F", "k" * 257, "caf%C3%A9", "tab%09"]
    for raw in bad_keys:
        r = api("PUT", "/storage/" + raw, token=tok, body={"value": 1})
        c.expect(is_error(r, 400, "INVALID_KEY"), f"PUT /storage/{raw[:20]}: {r!r}")
        r = api("GET", "/storage/" + raw, token=tok)
        c.expect(is_error(r, 400, "INVALID_KEY"), f"GET /storage/{raw[:20]}: {r!r}")
    r = api("PUT", "/storage/" + "k" * 256, token=tok, body={"value": 1})
    c.expect(r.status == 200, f"a key of 256 bytes: {r!r}")
    delete("store-a", "k" * 256)
    for body in ({"valeu": 1}, {}, {"value": 1, "other": 2}):
        r = api("PUT", "/storage/x", token=tok, body=body)
        c.expect(is_error(r, 400, "INVALID_VALUE"), f"PUT body {body}: {r!r}")
    for body in ("[1]", "{", '{"value": 1, "value": 2}', "value=1"):
        r = api("PUT", "/storage/x", token=tok, body=body, content_type="application/json")
        c.expect(is_error(r, 400, "INVALID_JSON"), f"PUT body {body!r}: {r!r}")
    r = api("PUT", "/storage/x", token=tok, body="1", content_type="text/plain")
    c.expect(is_error(r, 415), f"PUT text/plain: {r!r}")
    r = api("PUT", "/storage/x", token=tok, body={"value": "v" * 65535})
    c.expect(is_error(r, 413, "VALUE_TOO_LARGE"), f"PUT 64 KiB + 1: {r!r}")
    r = api("PUT", "/storage/x", token=tok, body=b'{"value":"' + b"v" * 300000 + b'"}',
            content_type="application/json")
    c.expect(r.status == 413, f"PUT body of 300 KB: {r!r}")
    c.expect(get("store-a", "x").status == 404, "a refused PUT stored x")
    r = api("POST", "/storage/x", token=tok, body={"value": 1})
    c.expect(r.status == 405 and "PUT" in (r.headers.get("Allow") or ""), f"POST /storage/x: {r!r}")
    r = api("PUT", "/storage/", token=tok, body={"value": 1})
    c.expect(r.status in (404, 405) and is_error(r, r.status), f"PUT /storage/: {r!r}")
    c.done()


@test
def test_09_restart():
    require("store-a" in C.tokens, "prerequisite: modules not installed")
    c = Check()
    before_a = listing("store-a", limit=1000).json
    before_b = listing("store-b", limit=1000).json
    usage_a = usage("store-a")
    status = C.daemon.stop()
    c.expect(status == 0, f"modcored exit status after SIGTERM: {status}")
    C.daemon.start()

    def running():
        r = admin("GET", "/modules")
        mods = {m["name"]: m["status"] for m in (r.json or {}).get("modules", [])}
        return all(mods.get(n) == "RUNNING" for n in ("store-a", "store-b"))

    require(wait_for(running, 20, 0.25), "store-a/store-b not RUNNING after the restart")
    c.expect(listing("store-a", limit=1000).json == before_a, "store-a's data changed")
    c.expect(listing("store-b", limit=1000).json == before_b, "store-b's data changed")
    c.expect(usage("store-a") == usage_a, f"store-a's usage after the restart: {usage('store-a')}")
    c.expect(get("store-a", "secret").json.get("value") == "replaced", "store-a's secret")
    c.done()


@test
def test_10_uninstall():
    require("store-a" in C.tokens, "prerequisite: modules not installed")
    c = Check()
    c.expect(os.path.isdir(db_dir("store-a")), "store-a has no db dir before the uninstall")
    r = admin("DELETE", "/modules/store-a")
    c.expect(r.status == 200, f"DELETE /modules/store-a: {r!r}")
    c.expect(not os.path.exists(db_dir("store-a")), f"{db_dir('store-a')} still exists")
    c.expect(not os.path.exists(os.path.join(C.data, "modules", "store-a")),
             "store-a's module dir still exists")
    r = get("store-a", "secret")
    c.expect(r.status == 401, f"the removed module's token: {r!r}")
    c.expect(get("store-b", "secret").json.get("value") == "B's", "store-b lost its data")
    # Installed again under the same name: a new, empty database.
    install("store-a", ["storage.rw"])
    r = listing("store-a")
    c.expect(r.status == 200 and r.json == {"items": [], "next": None},
             f"store-a's storage after a reinstall: {r!r}")
    c.expect(usage("store-a")["keys"] == 0, f"usage after a reinstall: {usage('store-a')}")
    c.expect(put("store-a", "again", 1).status == 200, "PUT after a reinstall")
    c.done()


if __name__ == "__main__":
    sys.exit(harness.run(__doc__, CONFIG, tmp_prefix="modcore-storage-",
                         required=("modcored", "modcore-launch"),
                         build_help="the build dir (modcored)"))
