#!/usr/bin/env python3
"""End-to-end test of modcore: the real modcored, real module processes, real HTTP.

    python3 tests/integration/test_e2e.py --build <build dir> [-k SUBSTRING] [--keep]

Starts build/modcored on a free port with a temporary data dir and a config with short
timeouts, installs the example module `hello` and the test fixture `probe`
(tests/fixtures/probe: it reveals its own token so the test can act as the module),
and checks the install, authentication, rate limit, restart, uninstall and error paths
and the modctl CLI. The daemon is always stopped and the temp dir removed at the end
(--keep keeps the dir). The daemon's stderr goes to <tmp>/modcored.log; its new lines
are printed under every failing test. Python standard library only.

The tests run in order and share state (the daemon, installed modules, the probe's
token): a test whose prerequisite failed fails too, saying which one.
Last line: "N passed, M failed"; exit status 1 if anything failed.
"""
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import zipfile

import harness
from harness import (PROBE_DIR, Check, Daemon, admin, api, free_port, is_error, log,
                     make_zip, modctl, module_get, pick_module_port, pid_alive, port_bindable,
                     probe_manifest, probe_zip, require, test, wait_for)

CONFIG = harness.sandbox_config() + """
[install]
max_total_mb = 8
"""


class Ctx(harness.Ctx):
    """State shared by the tests, in order (the daemon, its dirs and admin token: see
    harness.Ctx)."""

    hello_port = None
    probe_port = None
    probe_token = None
    probe_secret = None

    def __init__(self):
        super().__init__()
        self.responses = []  # every API response (status, headers, body) seen: leak checks
        self.secrets = {}  # label -> secret string that must never appear in an API response

    def on_admin_token(self, token):
        self.secrets["admin token"] = token

    def on_response(self, resp):
        self.responses.append(f"{resp.status}\n{resp.headers}\n".encode() + resp.body)


C = harness.use(Ctx())


# --- helpers ------------------------------------------------------------------------------

def modules_by_name():
    r = admin("GET", "/modules")
    require(r.status == 200 and r.json and "modules" in r.json, f"GET /modules: {r!r}")
    return {m["name"]: m for m in r.json["modules"]}


def multipart(fields):
    """fields: (name, filename or None, content type or None, bytes). Returns (body,
    content type)."""
    boundary = "modcore-itest-%016x" % random.getrandbits(64)
    parts = []
    for name, filename, ctype, data in fields:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if filename:
            head += f'; filename="{filename}"'
        head += "\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        parts.append(head.encode() + b"\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# --- tests --------------------------------------------------------------------------------

@test
def test_01_health():
    c = Check()
    r = api("GET", "/health")
    c.expect(r.status == 200, f"GET /health without a token: {r!r}")
    body = r.json or {}
    for key in ("status", "version", "mode", "uptime", "integrity"):
        c.expect(key in body, f"GET /health: no key {key!r} in {body}")
    c.expect(body.get("status") == "ok", f"GET /health status: {body.get('status')!r}")
    c.expect(isinstance(body.get("uptime"), int), f"uptime not an integer: {body}")
    c.done()


@test
def test_02_install_hello_raw():
    c = Check()
    port = pick_module_port()
    r = admin("POST", "/modules/install", body=harness.example_zip("hello", port),
              content_type="application/zip")
    require(r.status == 201, f"raw install of hello on port {port}: {r!r}")
    C.hello_port = port
    body = r.json or {}
    c.expect(body.get("name") == "hello", f"install answer name: {body.get('name')!r}")
    c.expect(body.get("status") == "RUNNING", f"install answer status: {body.get('status')!r}")
    c.expect(body.get("port") == C.hello_port, f"install answer port: {body.get('port')!r}")
    health = module_get(C.hello_port, "/health")
    c.expect(health and health[0] == 200 and health[1].get("name") == "hello",
             f"hello's own GET /health: {health}")

    # hello asks the core who it is in the background at start: wait for that.
    def known():
        got = module_get(C.hello_port, "/hello")
        return got if got and got[0] == 200 and got[1] and got[1].get("core_self") else None

    got = wait_for(known, 10, 0.2)
    last = module_get(C.hello_port, "/hello")
    if c.expect(got, f"GET /hello on the module never showed core_self within 10 s: {last}"):
        me = got[1]["core_self"]
        c.expect(me.get("name") == "hello", f"core_self.name: {me.get('name')!r}")
        c.expect(me.get("status") in ("RUNNING", "INSTALLING"), f"core_self.status: {me}")
        c.expect("hello" in got[1].get("message", ""), f"GET /hello message: {got[1]}")
    c.done()


@test
def test_03_install_probe_multipart():
    c = Check()
    port = pick_module_port()
    body, ctype = multipart([
        ("comment", None, None, b"a field before the archive"),
        ("module", "probe.zip", "application/zip", probe_zip("probe", port)),
    ])
    r = admin("POST", "/modules/install", body=body, content_type=ctype)
    require(r.status == 201, f"multipart install of probe on port {port}: {r!r}")
    C.probe_port = port
    b = r.json or {}
    c.expect(b.get("name") == "probe", f"install answer name: {b.get('name')!r}")
    c.expect(b.get("status") == "RUNNING", f"install answer status: {b.get('status')!r}")
    c.expect(b.get("port") == C.probe_port, f"install answer port: {b.get('port')!r}")
    health = module_get(C.probe_port, "/health")
    c.expect(health and health[0] == 200, f"probe's own GET /health: {health}")
    c.done()


def secret_keys(value, path=""):
    """Key paths in a JSON value whose name suggests a secret."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if any(word in k.lower() for word in ("token", "secret", "password", "key")):
                found.append(path + "." + k)
            found += secret_keys(v, path + "." + k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += secret_keys(v, f"{path}[{i}]")
    return found


def leaks(where):
    """Labels of secrets found in any API response so far."""
    found = []
    for label, secret in C.secrets.items():
        if secret and any(secret.encode() in resp for resp in C.responses):
            found.append(f"{label} appears in an API response ({where})")
    return found


@test
def test_04_probe_token():
    require(C.probe_port, "prerequisite: probe not installed (test_03)")
    c = Check()
    got = module_get(C.probe_port, "/token")
    require(got and got[0] == 200, f"probe GET /token: {got}")
    info = got[1]
    C.probe_token = info["token"]
    C.probe_secret = info["webhook_secret"]
    C.secrets["probe token"] = C.probe_token
    C.secrets["probe webhook secret"] = C.probe_secret
    env = info["env"]

    r = api("GET", "/modules/self", token=C.probe_token)
    c.expect(r.status == 200 and (r.json or {}).get("name") == "probe",
             f"GET /modules/self with the probe's token: {r!r}")
    c.expect(not secret_keys(r.json), f"/modules/self has secret-like keys {secret_keys(r.json)}")
    c.expect((r.json or {}).get("status") == "RUNNING", f"/modules/self status: {r!r}")
    listing = admin("GET", "/modules")
    c.expect(not secret_keys(listing.json), f"GET /modules has secret-like keys "
             f"{secret_keys(listing.json)}")
    admin("GET", "/modules/probe")

    # The environment the core gave the module.
    c.expect(len(C.probe_token) == 64, f"token length {len(C.probe_token)}")
    c.expect(env.get("SELENA_MODULE_TOKEN") == 64, f"SELENA_MODULE_TOKEN: {env.get('SELENA_MODULE_TOKEN')}")
    c.expect(env.get("MODULE_TOKEN") == 64, f"MODULE_TOKEN: {env.get('MODULE_TOKEN')}")
    c.expect(env.get("SELENA_WEBHOOK_SECRET") == 64,
             f"SELENA_WEBHOOK_SECRET: {env.get('SELENA_WEBHOOK_SECRET')}")
    c.expect(all(ch in "0123456789abcdef" for ch in C.probe_secret),
             "webhook secret is not lowercase hex")
    core = f"http://127.0.0.1:{C.daemon.port}/api/v1"
    c.expect(env.get("SELENA_CORE_URL") == core, f"SELENA_CORE_URL: {env.get('SELENA_CORE_URL')!r}")
    c.expect(env.get("SELENA_CORE_API") == core, f"SELENA_CORE_API: {env.get('SELENA_CORE_API')!r}")
    c.expect(env.get("SELENA_MODULE_NAME") == "probe", f"SELENA_MODULE_NAME: {env.get('SELENA_MODULE_NAME')!r}")
    c.expect(env.get("SELENA_MODULE_PORT") == str(C.probe_port),
             f"SELENA_MODULE_PORT: {env.get('SELENA_MODULE_PORT')!r}")
    install_path = env.get("SELENA_INSTALL_PATH") or ""
    c.expect(install_path and os.path.realpath(install_path)
             == os.path.realpath(os.path.join(C.data, "modules", "probe")),
             f"SELENA_INSTALL_PATH: {install_path!r}")
    c.expect(env.get("MODCORE_SDK_ENDPOINT"), f"MODCORE_SDK_ENDPOINT missing: {sorted(env)}")
    env_file = os.path.join(C.data, "modules", "probe", ".env.module")
    c.expect(not os.path.exists(env_file), f"{env_file} still exists")

    # Secrets: never in an API answer, never in plain text on disk or in the core's log.
    for problem in leaks("so far"):
        c.expect(False, problem)
    plain = [C.probe_token.encode(), C.probe_secret.encode()]
    for root, _dirs, files in os.walk(C.data):
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 64 << 20:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for secret in plain:
                c.expect(secret not in data, f"a probe secret is stored in plain text in {path}")
    with open(C.log_path, "rb") as f:
        daemon_log = f.read()
    c.expect(all(s not in daemon_log for s in plain), "a probe secret appears in modcored's log")
    cred = os.path.join(C.data, "secure", "modules", "probe.cred")
    c.expect(os.path.exists(cred), f"{cred} does not exist")
    c.done()


@test
def test_05_auth_errors():
    require(C.probe_token, "prerequisite: no probe token (test_04)")
    c = Check()
    wrong = "x" * 64
    r = api("GET", "/modules/self", token=wrong)
    c.expect(r.status == 401 and r.json == {"error": "UNAUTHORIZED",
                                            "detail": "Invalid or expired token"},
             f"wrong token: {r!r}")
    r = api("GET", "/modules/self")
    c.expect(is_error(r, 401, "UNAUTHORIZED"), f"no Authorization header: {r!r}")
    r = api("GET", "/modules/self", headers={"Authorization": "Basic " + C.probe_token})
    c.expect(is_error(r, 401), f"Authorization: Basic <token>: {r!r}")
    r = api("GET", "/modules", token=C.probe_token)
    c.expect(is_error(r, 403, "FORBIDDEN"), f"probe token on GET /modules: {r!r}")
    r = api("POST", "/modules/hello/stop", token=C.probe_token)
    c.expect(is_error(r, 403, "FORBIDDEN"), f"probe token on POST /modules/hello/stop: {r!r}")
    r = api("GET", "/no/such/route", token=C.admin)
    c.expect(is_error(r, 404), f"unknown route with the admin token: {r!r}")
    r = api("GET", "/no/such/route")
    c.expect(r.status in (401, 404) and r.json, f"unknown route without a token: {r!r}")
    r = api("PUT", "/modules/self", token=C.probe_token, body=b"{}",
            content_type="application/json")
    c.expect(is_error(r, 405), f"PUT /modules/self: {r!r}")
    c.expect("GET" in (r.headers.get("Allow") or ""), f"405 without Allow: GET: {r.headers.get('Allow')!r}")
    r = api("DELETE", "/health")
    c.expect(r.status == 405 or is_error(r, 401), f"DELETE /health: {r!r}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", C.daemon.port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        c.expect(resp.status == 404 and json.loads(body).get("error"),
                 f"GET / (outside the API): HTTP {resp.status} {body[:200]!r}")
    except ValueError:
        c.expect(False, "GET / (outside the API) is not JSON")
    c.done()


@test
def test_06_rate_limit():
    require(C.probe_token, "prerequisite: no probe token (test_04)")
    c = Check()
    total, workers = 300, 8
    time.sleep(1.5)  # the bucket is full again
    lock = threading.Lock()
    state = {"next": 0, "first_send": None, "last_reply": None}
    results = []  # (status, headers)
    errors = []
    barrier = threading.Barrier(workers)
    headers = {"Authorization": "Bearer " + C.probe_token}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", C.daemon.port, timeout=10)
        conn.connect()
        barrier.wait()
        mine = []
        while True:
            with lock:
                if state["next"] >= total:
                    break
                state["next"] += 1
            sent = time.perf_counter()
            try:
                conn.request("GET", "/api/v1/modules/self", headers=headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as error:
                errors.append(repr(error))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", C.daemon.port, timeout=10)
                continue
            got = time.perf_counter()
            mine.append((sent, got, resp.status, resp.headers))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    require(results, f"no answers at all; errors: {errors[:5]}")
    first = min(r[0] for r in results)
    last = max(r[1] for r in results)
    elapsed = last - first
    ok = [r for r in results if r[2] == 200]
    limited = [r for r in results if r[2] == 429]
    other = [r for r in results if r[2] not in (200, 429)]
    expected = 20 + 100 * elapsed
    log(f"    rate limit: {len(results)} answers in {elapsed:.3f} s: {len(ok)} x 200, "
        f"{len(limited)} x 429, {len(other)} other, {len(errors)} errors; "
        f"expected accepted = 20 + 100 * {elapsed:.3f} = {expected:.1f}")
    c.expect(not errors, f"transport errors: {errors[:5]}")
    c.expect(len(results) == total, f"{len(results)} answers for {total} requests")
    c.expect(not other, f"statuses other than 200/429: {sorted(set(r[2] for r in other))}")
    c.expect(abs(len(ok) - expected) <= 3,
             f"accepted {len(ok)}, expected {expected:.1f} +- 3 (20 + 100 x {elapsed:.3f} s)")
    bad = []
    for _s, _g, _status, h in limited:
        retry = h.get("Retry-After")
        if not (retry and retry.isdigit() and int(retry) >= 1 and h.get("RateLimit-Policy")
                and h.get("RateLimit")):
            bad.append(dict(h))
    c.expect(not bad, f"{len(bad)} 429 answers without Retry-After >= 1 / RateLimit-Policy / "
             f"RateLimit, e.g. {bad[:1]}")
    c.expect(all(r[3].get("RateLimit-Policy") and r[3].get("RateLimit") for r in ok),
             "a 200 answer without RateLimit-Policy / RateLimit headers")
    c.done()


@test
def test_07_restart():
    require(C.probe_token and C.hello_port, "prerequisite: hello/probe not installed")
    c = Check()
    # --- clean stop and start ---
    before = modules_by_name()
    status = C.daemon.stop()
    c.expect(status == 0, f"modcored exit status after SIGTERM: {status}")
    c.expect(module_get(C.hello_port, "/health", 1) is None,
             "hello still answers after modcored stopped cleanly")
    c.expect(module_get(C.probe_port, "/health", 1) is None,
             "probe still answers after modcored stopped cleanly")
    for name in ("hello", "probe"):
        pid = before.get(name, {}).get("pid")
        c.expect(pid and not pid_alive(pid), f"{name}'s pid {pid} is alive after a clean stop")
    # Leftovers of a crash mid-install: cleared before the gateway answers.
    stale_upload = os.path.join(C.data, "tmp", "upload-stale")
    orphan_dir = os.path.join(C.data, "modules", "orphan")
    with open(stale_upload, "wb") as f:
        f.write(b"PK")
    os.makedirs(orphan_dir)
    C.daemon.start()
    c.expect(not os.path.exists(stale_upload), f"{stale_upload} is still there once modcored answers")
    c.expect(not os.path.exists(orphan_dir), f"{orphan_dir} is still there once modcored answers")

    def both_running():
        mods = modules_by_name()
        return mods if all(mods.get(n, {}).get("status") == "RUNNING"
                           for n in ("hello", "probe")) else None

    mods = wait_for(both_running, 15, 0.25)
    require(mods, f"after a restart, hello and probe are not RUNNING within 15 s: "
            f"{ {n: m.get('status') for n, m in modules_by_name().items()} }")
    r = api("GET", "/modules/self", token=C.probe_token)
    c.expect(r.status == 200 and (r.json or {}).get("name") == "probe",
             f"the probe's token from before the restart: {r!r}")
    got = module_get(C.probe_port, "/token")
    c.expect(got and got[1].get("token") == C.probe_token,
             "the probe runs with a different token after the restart")
    c.expect(got and got[1].get("webhook_secret") == C.probe_secret,
             "the probe runs with a different webhook secret after the restart")
    c.expect(module_get(C.hello_port, "/health"), "hello does not answer after the restart")

    # --- kill -9: the modules must die with the core ---
    pids = {n: mods[n]["pid"] for n in ("hello", "probe")}
    c.expect(all(pids.values()), f"pids in the API: {pids}")
    C.daemon.kill9()

    def all_gone():
        return (module_get(C.hello_port, "/health", 0.5) is None
                and module_get(C.probe_port, "/health", 0.5) is None
                and not any(pid_alive(p) for p in pids.values() if p))

    gone = wait_for(all_gone, 5, 0.1)
    c.expect(gone, f"5 s after kill -9 of modcored, modules remain: "
             f"alive pids {[p for p in pids.values() if p and pid_alive(p)]}, hello answers: "
             f"{module_get(C.hello_port, '/health', 0.5) is not None}, probe answers: "
             f"{module_get(C.probe_port, '/health', 0.5) is not None}")
    C.daemon.start()
    mods = wait_for(both_running, 15, 0.25)
    c.expect(mods, f"after kill -9 and a start, hello and probe are not RUNNING within 15 s: "
             f"{ {n: (m.get('status'), m.get('status_reason')) for n, m in modules_by_name().items()} }")
    r = api("GET", "/modules/self", token=C.probe_token)
    c.expect(r.status == 200, f"the probe's token after kill -9 and a start: {r!r}")
    c.done()


@test
def test_08_uninstall():
    require(C.probe_token, "prerequisite: no probe token (test_04)")
    c = Check()
    r = admin("DELETE", "/modules/probe")
    c.expect(r.status == 200 and (r.json or {}).get("status") == "REMOVED",
             f"DELETE /modules/probe: {r!r}")
    r = api("GET", "/modules/self", token=C.probe_token)
    c.expect(r.status == 401 and (r.json or {}).get("detail") == "Invalid or expired token",
             f"the removed probe's token right after the uninstall: {r!r}")
    moddir = os.path.join(C.data, "modules", "probe")
    cred = os.path.join(C.data, "secure", "modules", "probe.cred")
    c.expect(not os.path.exists(moddir), f"{moddir} still exists")
    c.expect(not os.path.exists(cred), f"{cred} still exists")
    c.expect(wait_for(lambda: module_get(C.probe_port, "/health", 0.5) is None, 5),
             f"probe's port {C.probe_port} still answers 5 s after the uninstall")
    mods = modules_by_name()
    c.expect("probe" not in mods, f"GET /modules still lists probe: {mods.get('probe')}")
    r = admin("GET", "/modules/probe")
    c.expect(r.status == 404, f"GET /modules/probe after the uninstall: {r!r}")
    r = admin("DELETE", "/modules/probe")
    c.expect(r.status == 404, f"a second DELETE /modules/probe: {r!r}")
    c.done()


def tmp_entries():
    try:
        return sorted(os.listdir(os.path.join(C.data, "tmp")))
    except OSError as error:
        return [f"<{error}>"]


@test
def test_09_bad_archives():
    require(C.hello_port, "prerequisite: hello not installed (test_02)")
    c = Check()
    names_before = sorted(modules_by_name())
    dirs_before = sorted(os.listdir(os.path.join(C.data, "modules")))
    manifest_ok = json.dumps(probe_manifest("badzip", pick_module_port()))
    with open(os.path.join(PROBE_DIR, "main.py"), "rb") as f:
        main_py = f.read()

    symlink = zipfile.ZipInfo("link.py")
    symlink.create_system = 3
    symlink.external_attr = 0o120777 << 16
    slip = zipfile.ZipInfo("../evil.txt")
    bomb_port = pick_module_port()
    crash_port = pick_module_port()
    zeros = b"\0" * (20 << 20)

    def bomb():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.writestr("manifest.json", json.dumps(probe_manifest("bomb", bomb_port)))
            z.writestr("main.py", main_py)
            z.writestr("zeros.bin", zeros)
        return buf.getvalue()

    bad_manifest = probe_manifest("Bad_Name!", 9999, permissions=["device.read", "fly.to.moon"])
    crash = probe_manifest("crasher", crash_port, entry=[
        "python3", "-c", "import sys; print('crasher: exiting with 3', flush=True); sys.exit(3)"])
    crash_silent = probe_manifest("crasher2", crash_port, entry=[
        "python3", "-c", "import sys; sys.exit(3)"])

    cases = [
        # label, body, content type, status, error code (None: any), extra check
        ("random bytes", os.urandom(4096), "application/zip", 400, None, None),
        ("zip slip ../evil.txt",
         make_zip([("manifest.json", manifest_ok), ("main.py", main_py), (slip, "evil")]),
         "application/zip", 400, "ZIP_UNSAFE_PATH", None),
        ("symlink entry",
         make_zip([("manifest.json", manifest_ok), ("main.py", main_py), (symlink, "main.py")]),
         "application/zip", 400, None, None),
        ("duplicate entry names",
         make_zip([("manifest.json", manifest_ok), ("main.py", main_py), ("main.py", main_py)]),
         "application/zip", 400, None, None),
        ("zip bomb (20 MB of zeros, max_total_mb = 8)", bomb(), "application/zip", 413, None,
         None),
        ("manifest with three problems", make_zip([("manifest.json", json.dumps(bad_manifest)),
                                                   ("main.py", main_py)]),
         "application/zip", 422, None, "problems"),
        ("no manifest", make_zip([("main.py", main_py)]), "application/zip", 422, None, None),
        ("port used by hello", probe_zip("other", C.hello_port), "application/zip", 409,
         "PORT_IN_USE", None),
        ("name of an installed module", probe_zip("hello", pick_module_port()),
         "application/zip", 409, None, None),
        ("entry exits at once (with output)", probe_zip(manifest=crash), "application/zip", 400,
         "SANDBOX_TEST_FAILED", "output"),
        ("entry exits at once (silently)", probe_zip(manifest=crash_silent), "application/zip",
         400, "SANDBOX_TEST_FAILED", "output-key"),
        ("text/plain", probe_zip("textplain", pick_module_port()), "text/plain", 415, None, None),
        ("empty body", b"", "application/zip", 400, None, None),
    ]
    for label, body, ctype, status, code, extra in cases:
        r = admin("POST", "/modules/install", body=body, content_type=ctype)
        if not c.expect(is_error(r, status, code),
                        f"{label}: expected {status} {code or ''} with {{error, detail}}, got {r!r}"):
            continue
        if extra == "problems":
            problems = r.json.get("problems") or []
            text = json.dumps(problems)
            c.expect(isinstance(problems, list) and len(problems) >= 3,
                     f"{label}: problems = {problems}")
            for field in ("name", "port", "permissions"):
                c.expect(any(str(p).startswith(field) for p in problems),
                         f"{label}: no problem about {field} in {problems}")
            c.expect("fly.to.moon" in text, f"{label}: the unknown permission is not named: {problems}")
        if extra == "output":
            c.expect("crasher: exiting with 3" in (r.json.get("output") or ""),
                     f"{label}: the module's output is not in the answer: {r!r}")
        if extra == "output-key":
            c.expect("output" in r.json,
                     f"{label}: no \"output\" key in the answer (the module printed nothing): {r!r}")
        if code is None:
            log(f"    {label}: {r.status} {r.json.get('error')}: {r.json.get('detail')}")
        # Nothing stored.
        if tmp_entries():
            log(f"    note: {label}: DATA/tmp not yet empty when the answer came: "
                f"{tmp_entries()}")
        empty = wait_for(lambda: not tmp_entries(), 3, 0.05)
        c.expect(empty, f"{label}: DATA/tmp not empty 3 s after the answer: {tmp_entries()}")
    # An upload declared larger than [gateway] max_upload_mb (64 MB by default) is refused
    # from its headers alone (raw socket: no body is sent).
    try:
        with socket.create_connection(("127.0.0.1", C.daemon.port), timeout=10) as s:
            s.sendall(("POST /api/v1/modules/install HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Authorization: Bearer {C.admin}\r\nContent-Type: application/zip\r\n"
                       "Content-Length: 100000000\r\nConnection: close\r\n\r\n").encode())
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        C.responses.append(answer)
        head, _, body = answer.partition(b"\r\n\r\n")
        c.expect(head.startswith(b"HTTP/1.1 413") and b"PAYLOAD_TOO_LARGE" in body,
                 f"upload declared as 100 MB: {answer[:300]!r}")
    except OSError as error:
        c.expect(False, f"upload declared as 100 MB: {error!r}")
    c.expect(C.daemon.running(), "modcored died on an upload declared as 100 MB")
    c.expect(not tmp_entries(), f"DATA/tmp not empty after the 100 MB upload: {tmp_entries()}")
    for name in ("crasher", "crasher2"):
        c.expect(not os.path.exists(os.path.join(C.data, "modules", name)),
                 f"DATA/modules/{name} exists after its failed install")
        c.expect(not os.path.exists(os.path.join(C.data, "secure", "modules", name + ".cred")),
                 f"{name}.cred exists after its failed install")
    c.expect(module_get(crash_port, "/health", 0.5) is None, "something answers on crasher's port")
    names_after = sorted(modules_by_name())
    dirs_after = sorted(os.listdir(os.path.join(C.data, "modules")))
    c.expect(names_after == names_before, f"GET /modules changed: {names_before} -> {names_after}")
    c.expect(dirs_after == dirs_before, f"DATA/modules changed: {dirs_before} -> {dirs_after}")
    c.expect(not tmp_entries(), f"DATA/tmp not empty: {tmp_entries()}")
    c.done()


@test
def test_10_modctl():
    c = Check()
    p = modctl("list")
    c.expect(p.returncode == 0 and "NAME" in p.stdout and "STATUS" in p.stdout
             and "hello" in p.stdout,
             f"modctl list: exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")
    p = modctl("info", "nosuch")
    c.expect(p.returncode == 1 and p.stderr.strip(),
             f"modctl info nosuch: exit {p.returncode}, stderr {p.stderr!r}")
    p = modctl("--json", "list")
    try:
        listed = json.loads(p.stdout)
        c.expect(p.returncode == 0 and "modules" in listed,
                 f"modctl --json list: exit {p.returncode}, {p.stdout[:300]!r}")
    except ValueError:
        c.expect(False, f"modctl --json list is not JSON: {p.stdout[:300]!r}")
    # Reinstall under the uninstalled probe's name and on its old port, with modctl:
    # neither may still be held by the removed module.
    port = C.probe_port if C.probe_port and port_bindable(C.probe_port) else pick_module_port()
    zip_path = os.path.join(C.tmp, "probe-again.zip")
    with open(zip_path, "wb") as f:
        f.write(probe_zip("probe", port))
    p = modctl("install", zip_path)
    c.expect(p.returncode == 0 and "probe" in p.stdout and "RUNNING" in p.stdout,
             f"modctl install: exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")
    if p.returncode == 0:
        got = module_get(port, "/token")
        c.expect(got and got[0] == 200, f"the reinstalled probe does not answer: {got}")
        if got and got[0] == 200:
            new_token = got[1]["token"]
            C.secrets["reinstalled probe token"] = new_token
            C.secrets["reinstalled probe webhook secret"] = got[1]["webhook_secret"]
            c.expect(new_token != C.probe_token, "the reinstall got the old token back")
            r = api("GET", "/modules/self", token=new_token)
            c.expect(r.status == 200 and (r.json or {}).get("port") == port,
                     f"the new token: {r!r}")
        if C.probe_token:
            r = api("GET", "/modules/self", token=C.probe_token)
            c.expect(r.status == 401, f"the OLD probe token after the reinstall: {r!r}")
        p = modctl("uninstall", "probe")
        c.expect(p.returncode == 0 and "probe" in p.stdout,
                 f"modctl uninstall: exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")
        c.expect(wait_for(lambda: module_get(port, "/health", 0.5) is None, 5),
                 "the probe still answers after modctl uninstall")
    p = modctl("list", url=f"http://127.0.0.1:{free_port()}")
    c.expect(p.returncode == 3, f"modctl against a closed port: exit {p.returncode}, "
             f"stderr {p.stderr!r}")
    c.expect(C.admin not in p.stdout + p.stderr, "modctl printed the admin token")
    c.done()


@test
def test_11_start_stop():
    require(C.hello_port, "prerequisite: hello not installed (test_02)")
    c = Check()
    r = admin("POST", "/modules/hello/stop")
    c.expect(r.status == 200 and (r.json or {}).get("status") == "STOPPED",
             f"POST /modules/hello/stop: {r!r}")
    c.expect(wait_for(lambda: module_get(C.hello_port, "/health", 0.5) is None, 5),
             "hello still answers after stop")
    r = admin("GET", "/modules/hello")
    c.expect((r.json or {}).get("status") == "STOPPED", f"GET /modules/hello after stop: {r!r}")
    r = admin("POST", "/modules/hello/start")
    c.expect(r.status == 200 and (r.json or {}).get("status") == "RUNNING",
             f"POST /modules/hello/start: {r!r}")
    c.expect(wait_for(lambda: module_get(C.hello_port, "/health", 0.5), 5),
             "hello does not answer after start")
    r = admin("POST", "/modules/hello/start")
    c.expect(r.status == 200 and (r.json or {}).get("status") == "RUNNING",
             f"POST /modules/hello/start on a running module: {r!r}")
    r = admin("POST", "/modules/nosuch/start")
    c.expect(is_error(r, 404), f"POST /modules/nosuch/start: {r!r}")
    r = admin("POST", "/modules/nosuch/stop")
    c.expect(is_error(r, 404), f"POST /modules/nosuch/stop: {r!r}")
    c.done()


def run_daemon_expect_failure(data, port, label, c, words):
    """Starts a modcored that must exit non-zero within 10 s with a message that contains
    one of words (case-insensitive)."""
    d = Daemon(data, port, C.config)
    started = time.monotonic()
    proc = subprocess.Popen(d.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    C.extra_procs.append(proc)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        c.expect(False, f"{label}: still running after 10 s (killed); stderr: {err[-800:]!r}")
        return
    elapsed = time.monotonic() - started
    text = out + err
    c.expect(proc.returncode != 0, f"{label}: exit status {proc.returncode}; output {text[-800:]!r}")
    c.expect(any(w.lower() in text.lower() for w in words),
             f"{label}: message mentions none of {words}: {text[-800:]!r}")
    log(f"    {label}: exit {proc.returncode} after {elapsed:.1f} s: "
        f"{[l for l in text.splitlines() if l.strip()][-1:]}")


@test
def test_12_startup_errors():
    c = Check()
    require(C.daemon.running(), "prerequisite: modcored is not running")
    port = C.daemon.port
    run_daemon_expect_failure(os.path.join(C.tmp, "data2"), port,
                              "second modcored on the same port", c,
                              [f"127.0.0.1:{port}"])
    run_daemon_expect_failure(C.data, free_port(), "second modcored on the same data dir", c,
                              ["lock", "another modcored"])
    regular = os.path.join(C.tmp, "a-regular-file")
    with open(regular, "w") as f:
        f.write("not a directory\n")
    run_daemon_expect_failure(os.path.join(regular, "data"), free_port(),
                              "data dir under a regular file", c, [regular])
    c.expect(C.daemon.running(), "the first modcored died during the startup-error tests")
    r = api("GET", "/health")
    c.expect(r.status == 200, f"the first modcored after the startup-error tests: {r!r}")
    c.done()


@test
def test_13_no_secret_in_any_answer():
    c = Check()
    log(f"    checked {len(C.responses)} API responses for {len(C.secrets)} secrets")
    for problem in leaks("whole run"):
        c.expect(False, problem)
    c.done()


@test
def test_14_metrics():
    """GET /metrics: Prometheus text for the admin token only; counters move."""
    conn = http.client.HTTPConnection("127.0.0.1", C.daemon.port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    resp.read()
    require(resp.status == 401, f"/metrics without a token answered {resp.status}")

    def scrape():
        conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + C.admin})
        r = conn.getresponse()
        body = r.read().decode()
        require(r.status == 200 and r.getheader("Content-Type", "").startswith("text/plain"),
                f"/metrics: {r.status}")
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    before = scrape()
    key = 'modcore_http_requests_total{route="GET /health",status="200"}'
    for _ in range(3):
        api("GET", "/health")
    after = scrape()
    require(after.get(key, 0) - before.get(key, 0) == 3, f"{key}: {before.get(key)} -> {after.get(key)}")
    limited = 0
    for _ in range(60):  # an admin burst past the bucket: some are refused and counted
        conn.request("GET", "/api/v1/modules", headers={"Authorization": "Bearer " + C.admin})
        r = conn.getresponse()
        r.read()
        limited += r.status == 429
    time.sleep(1.2)
    after = scrape()
    require(limited > 0, "60 quick calls were never limited")
    require(after.get("modcore_rate_limited_total", 0) - before.get("modcore_rate_limited_total", 0)
            >= limited, f"rate-limited counter did not count the {limited} refusals")
    require(after.get("process_resident_memory_bytes", 0) > 1e6, "no RSS")
    require('modcore_modules{status="RUNNING"}' in after, "no modules gauge")
    require(any(k.startswith("modcore_actor_queue_depth") for k in after), "no actor metrics")
    conn.close()


if __name__ == "__main__":
    sys.exit(harness.run(__doc__, CONFIG, tmp_prefix="modcore-e2e-",
                         required=("modcored", "modctl", "modcore-launch", "examples/hello.zip"),
                         build_help="the build dir (modcored, modctl, examples)"))
