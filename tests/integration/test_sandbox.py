#!/usr/bin/env python3
"""Integration test of the module sandbox and supervisor: the real modcored on a free
port with a temporary data dir and a TOML config, real module processes in bubblewrap.

  1. isolation: the hostile fixture tries every attack (read <data>/secure, the core's
     LevelDB, admin.token, another module's files, the config; write outside its dir;
     fork bomb; memory past its limit; ptrace; mount; unshare; raw and packet sockets;
     see or signal host processes); each must fail while the core and hello keep serving
  2. resource use and logs in the API, `modctl top`, `modctl logs`
  3. health: a module whose /health turns 500 is restarted
  4. crash loop: a module that exits at once reaches CRASHLOOP with exit code, stderr and
     doubling restart delays, and the core stays idle meanwhile
  5. on_demand: installed stopped, started by POST start, stopped when idle; an event
     for a stopped one starts it, and it is delivered
  6. kill -9 of the core: no module process survives; a restarted core brings the
     always_on modules back with their tokens
  7. a port held by another program: the always_on module's start is tried again with
     a backoff until the port is free; a stop ends the attempts
Runs as root (CI does). Prints "N passed, M failed" last.

usage: test_sandbox.py --build BUILD_DIR"""
import argparse
import http.client
import io
import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.parse
import zipfile

import harness
from harness import SOURCE_DIR as SOURCE
from harness import free_port, log_since, pick_module_port


class Ctx(harness.Ctx):
    """The daemon and its dirs (see harness.Ctx); the checks below count themselves."""

    start_timeout = 20
    log_banner = False


C = harness.use(Ctx())

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what, flush=True)
    else:
        failed += 1
        print("FAIL " + what, flush=True)
    return cond


PORTS = {}  # module name -> its port (8100..8200, free when picked: none is hard-coded)


def http(method, url, token=None, body=None, content_type="application/json", timeout=30):
    """A request to http://127.0.0.1:PORT/...: (status, JSON body, or the raw body of an
    error that is not JSON), or (0, the error) when nothing answers."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    headers = {"Authorization": "Bearer " + token} if token else {}
    parts = urllib.parse.urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    try:
        r = harness.request(parts.port, method, path, data, headers, timeout,
                            content_type if data is not None else None)
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e)
    if 200 <= r.status < 300:
        return r.status, json.loads(r.body) if r.body else None
    try:
        return r.status, json.loads(r.body)
    except ValueError:
        return r.status, r.body


def zip_dir(src, manifest_changes=None):
    """A module ZIP of src's files; Python modules written with the SDK get it vendored
    (modules-sdk/python/modcore_sdk), as the build does for the examples."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(os.listdir(src)):
            path = os.path.join(src, name)
            if not os.path.isfile(path):
                continue
            if name == "manifest.json" and manifest_changes:
                m = json.load(open(path))
                m.update(manifest_changes)
                z.writestr(name, json.dumps(m))
            else:
                z.write(path, name)
        main = os.path.join(src, "main.py")
        if os.path.exists(main) and "modcore_sdk" in open(main).read():
            sdk = os.path.join(SOURCE, "modules-sdk", "python", "modcore_sdk")
            for name in sorted(os.listdir(sdk)):
                if name.endswith(".py"):
                    z.write(os.path.join(sdk, name), "modcore_sdk/" + name)
    return buf.getvalue()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def module_processes(data_dir):
    """Live (not zombie) processes that belong to this data dir's modules."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue
            cmd = open("/proc/%s/cmdline" % p, "rb").read().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink("/proc/%s/cwd" % p)
        except OSError:
            continue
        if data_dir in cmd or cwd.startswith(data_dir):
            if "modcored" not in cmd:
                found.append((int(p), cmd[:80]))
    return found


class Core(harness.Daemon):
    """The daemon under test (C.daemon), with the calls the tests make of it."""

    def __init__(self, port):
        super().__init__(C.data, port, C.config)
        self.url = "http://127.0.0.1:%d/api/v1" % port

    def start(self):
        """True once it answers (within 20 s), False if it does not."""
        try:
            super().start()
            return True
        except harness.Failed:
            return False

    def call(self, method, path, body=None, content_type="application/json", timeout=120):
        return http(method, self.url + path, C.admin, body, content_type, timeout)

    def module(self, name):
        return self.call("GET", "/modules/" + name)[1]

    def wait_status(self, name, statuses, timeout):
        deadline = time.time() + timeout
        rec = None
        while time.time() < deadline:
            rec = self.module(name)
            if isinstance(rec, dict) and rec.get("status") in statuses:
                return rec
            time.sleep(0.2)
        return rec


def modctl(*args):
    out = harness.modctl(*args, timeout=30, clean_env=False)
    return out.returncode, out.stdout + out.stderr


def test_isolation(core, config_path):
    hello = zip_dir(os.path.join(SOURCE, "modules-sdk", "examples", "hello"), {"port": PORTS["hello"]})
    status, rec = core.call("POST", "/modules/install", hello, "application/zip")
    check(status == 201 and rec.get("status") == "RUNNING", "hello installs and runs (%s)" % status)
    status, rec = core.call("POST", "/modules/install",
                            zip_dir(os.path.join(SOURCE, "tests", "fixtures", "hostile"),
                                    {"port": PORTS["hostile"]}),
                            "application/zip")
    check(status == 201 and rec.get("status") == "RUNNING",
          "hostile installs and runs (%s %s)" % (status, rec if status != 201 else ""))
    if status != 201:
        return

    status, ident = http("GET", HOSTILE + "/identity")
    check(status == 200 and ident["uid"] != 0, "the module runs as an unprivileged user (uid %s)" % ident.get("uid"))
    check(not ident["env_file_present"], ".env.module is gone before the module runs")

    # The attacks run while the core and hello are polled: both must keep answering.
    results = {}

    def run():
        results.update(http("GET", HOSTILE + "/attacks?" + urllib.parse.urlencode({
            "data": core.data, "other": "hello", "config": config_path,
            "core_pid": core.proc.pid}), timeout=300)[1] or {})

    worker = threading.Thread(target=run)
    worker.start()
    core_ok = hello_ok = probes = 0
    while worker.is_alive():
        probes += 1
        core_ok += http("GET", core.url + "/health", timeout=5)[0] == 200
        hello_ok += http("GET", HELLO + "/health", timeout=5)[0] == 200
        time.sleep(0.05)
    worker.join()
    check(probes > 0 and core_ok == probes, "the core answered all %d probes during the attacks" % probes)
    check(probes > 0 and hello_ok == probes, "hello answered all %d probes during the attacks" % probes)
    if not check(bool(results), "the hostile module reported its attacks"):
        return
    for name, verdict in sorted(results.items()):
        if name.startswith("control_"):
            check(not verdict["blocked"], "allowed: %s (%s)" % (name, verdict["detail"]))
        else:
            check(verdict["blocked"], "blocked: %s (%s)" % (name, verdict["detail"]))
    rec = core.wait_status("hostile", ["RUNNING"], 30)
    check(rec and rec.get("status") == "RUNNING", "hostile is still RUNNING after its attacks")
    check(http("GET", HELLO + "/health")[0] == 200, "hello still serves")


def test_usage_and_logs(core):
    rec = core.module("hostile")
    usage = rec.get("usage") or {}
    check(usage.get("rss_bytes", 0) > 1 << 20 and usage.get("pids", 0) >= 1,
          "GET /modules/hostile shows resource use (%s)" % usage)
    check("cpu_percent" in usage and "uptime_s" in usage and "restarts" in usage,
          "usage has cpu_percent, uptime_s, restarts")
    status, logs = core.call("GET", "/modules/hostile/logs?lines=200")
    check(status == 200 and any("hostile: starting" in l for l in logs.get("lines", [])),
          "GET /modules/hostile/logs returns its output")
    # (the fork bomb can starve its own /health of threads: a restart may follow, and the
    # tracebacks of its dying server threads come after its start line)
    check(core.call("GET", "/modules/hostile/logs?lines=0")[0] == 400, "logs?lines=0 is a 400")
    check(core.call("GET", "/modules/nosuch/logs")[0] == 404, "logs of an unknown module is a 404")
    status, _ = http("GET", core.url + "/modules/hostile/logs")
    check(status == 401, "logs need a token")
    rc, out = modctl("top")
    check(rc == 0 and "hostile" in out and "RSS" in out, "modctl top lists the modules")
    rc, out = modctl("logs", "hostile", "-n", "200")
    check(rc == 0 and "hostile: starting" in out, "modctl logs hostile -n 200")
    rc, out = modctl("logs", "hostile", "-n", "0")
    check(rc == 2, "modctl logs -n 0 is a usage error")


def test_health_restart(core):
    before = core.module("hostile").get("restarts", 0)
    check(http("POST", HOSTILE + "/sick", body={})[0] == 200, "hostile turns sick")
    deadline = time.time() + 30
    rec = None
    while time.time() < deadline:
        rec = core.module("hostile")
        if rec.get("restarts", 0) > before and rec.get("status") == "RUNNING":
            break
        time.sleep(0.3)
    check(rec.get("restarts", 0) > before and rec.get("status") == "RUNNING",
          "a module failing /health is restarted (restarts %s, %s)" % (rec.get("restarts"), rec.get("status_reason")))


def test_crash_loop(core):
    status, rec = core.call("POST", "/modules/install",
                            zip_dir(os.path.join(SOURCE, "tests", "fixtures", "crasher"),
                                    {"port": PORTS["crasher"]}),
                            "application/zip")
    check(status == 201, "crasher installs (its test command passes) (%s)" % status)
    rec = core.wait_status("crasher", ["CRASHLOOP"], 30)
    if not check(rec and rec.get("status") == "CRASHLOOP", "crasher reaches CRASHLOOP (%s)" % (rec or {}).get("status")):
        return
    last = rec.get("last_exit") or {}
    check(last.get("exit_code") == 3, "the record shows exit code 3")
    check("something went badly wrong" in last.get("stderr_tail", ""), "the record shows its stderr")
    check("crash loop" in rec.get("status_reason", ""), "status_reason explains: %s" % rec.get("status_reason"))
    rc, out = modctl("info", "crasher")
    check(rc == 0 and "CRASHLOOP" in out and "something went badly wrong" in out,
          "modctl info shows CRASHLOOP and stderr")
    rc, out = modctl("list")
    check(rc == 0 and "CRASHLOOP" in out, "modctl list shows CRASHLOOP")

    # The core is idle while the crasher waits for its (capped) backoff.
    time.sleep(2)
    before = cpu_seconds(core.proc.pid)
    time.sleep(4)
    used = cpu_seconds(core.proc.pid) - before
    check(used < 0.5, "the core used %.2f s of CPU in 4 s of crash loop" % used)
    check(http("GET", core.url + "/health", timeout=2)[0] == 200, "the core answers during the crash loop")

    starts = []
    for line in open(os.path.join(core.data, "logs", "crasher.log")):
        if line.startswith("crasher start "):
            starts.append(float(line.split()[2]))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    print("     restart gaps: %s" % ", ".join("%.2f" % g for g in gaps))
    # base 200 ms doubling, capped at 1600 ms (+ ~start-up time of python each time)
    doubling = len(gaps) >= 4 and gaps[1] > gaps[0] * 1.4 and gaps[2] > gaps[1] * 1.4
    check(doubling, "restart delays double (%s)" % ["%.2f" % g for g in gaps[:5]])
    check(len(gaps) >= 5 and max(gaps[4:] or [0]) < 1.6 + 1.5, "restart delays are capped")
    status, rec = core.call("POST", "/modules/crasher/stop")
    check(status == 200 and rec.get("status") == "STOPPED", "a crash-looping module can be stopped")
    n = len(starts)
    time.sleep(2.5)
    later = sum(1 for l in open(os.path.join(core.data, "logs", "crasher.log")) if l.startswith("crasher start "))
    check(later == n, "no restart after stop")


def test_on_demand(core):
    demand = zip_dir(os.path.join(SOURCE, "modules-sdk", "examples", "hello"),
                     {"name": "lazy", "port": PORTS["lazy"], "runtime_mode": "on_demand"})
    status, rec = core.call("POST", "/modules/install", demand, "application/zip")
    check(status == 201 and rec.get("status") == "STOPPED", "an on_demand module installs STOPPED (%s)" % rec.get("status"))
    status, rec = core.call("POST", "/modules/lazy/start")
    check(status == 200 and rec.get("status") == "RUNNING", "POST start runs it")
    rec = core.wait_status("lazy", ["STOPPED"], 15)
    check(rec.get("status") == "STOPPED" and "without activity" in rec.get("status_reason", ""),
          "it is stopped when idle (%s)" % rec.get("status_reason"))


WAKER = """from modcore_sdk import Module

module = Module()
seen = []


@module.on_event("wake.*")
def on_wake(event):
    seen.append(event.id)


@module.route("GET", "/seen")
def seen_route(request):
    return {"seen": list(seen)}


if __name__ == "__main__":
    module.run()
"""


def test_on_demand_event(core):
    """An event for an on_demand module that stopped when idle starts it (the webhook
    actor's RegistryWake), and the event is delivered to it."""
    src = os.path.join(C.tmp, "waker")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "main.py"), "w") as f:
        f.write(WAKER)
    with open(os.path.join(src, "manifest.json"), "w") as f:
        json.dump({"name": "waker", "version": "1.0.0", "type": "AUTOMATION",
                   "api_version": "1.0", "runtime_mode": "on_demand", "port": PORTS["waker"],
                   "permissions": ["events.subscribe"], "entry": ["python3", "main.py"]}, f)
    status, rec = core.call("POST", "/modules/install", zip_dir(src), "application/zip")
    check(status == 201 and rec.get("status") == "STOPPED", "waker (on_demand) installs STOPPED "
          "(%s %s)" % (status, rec.get("status") if isinstance(rec, dict) else rec))
    status, rec = core.call("POST", "/modules/waker/start")
    check(status == 200 and rec.get("status") == "RUNNING", "started once, it subscribes")
    deadline = time.time() + 15
    subscribed = False
    while time.time() < deadline and not subscribed:
        subs = core.call("GET", "/events/subscriptions")[1].get("subscriptions", [])
        subscribed = any(x.get("module") == "waker" for x in subs)
        time.sleep(0.2)
    check(subscribed, "waker subscribed to wake.*")
    rec = core.wait_status("waker", ["STOPPED"], 15)
    check(rec.get("status") == "STOPPED" and "without activity" in rec.get("status_reason", ""),
          "waker stopped when idle (%s)" % rec.get("status_reason"))
    status, published = core.call("POST", "/events/publish", {"type": "wake.ping",
                                                               "payload": {"n": 1}})
    check(status == 201 and published.get("event_id"),
          "an event for it is published (%s %s)" % (status, published))
    rec = core.wait_status("waker", ["RUNNING"], 20)
    check(rec.get("status") == "RUNNING", "the event started waker (%s: %s)"
          % (rec.get("status"), rec.get("status_reason")))
    deadline = time.time() + 20  # a first attempt while it starts is retried after 1 s
    seen = []
    while time.time() < deadline and published.get("event_id") not in seen:
        body = http("GET", "http://127.0.0.1:%d/seen" % PORTS["waker"])[1]
        seen = body.get("seen", []) if isinstance(body, dict) else []
        time.sleep(0.2)
    check(published.get("event_id") in seen, "the event was delivered to the module it started "
          "(%s)" % seen)


def test_kill9(core):
    ident = http("GET", HOSTILE + "/identity")[1]
    procs = module_processes(core.data)
    check(len(procs) >= 2, "module processes found before kill -9 (%d)" % len(procs))
    core.kill9()
    deadline = time.time() + 5
    while time.time() < deadline and module_processes(core.data):
        time.sleep(0.1)
    left = module_processes(core.data)
    check(not left, "no module process survives kill -9 of the core (%s)" % left)
    check(core.start(), "the core starts again")
    hostile = core.wait_status("hostile", ["RUNNING"], 40)
    hello = core.wait_status("hello", ["RUNNING"], 40)
    check(hostile.get("status") == "RUNNING" and hello.get("status") == "RUNNING",
          "always_on modules are back after the restart")
    again = http("GET", HOSTILE + "/identity")[1] or {}
    check(again.get("token_sha256") == ident.get("token_sha256") and ident.get("token_sha256"),
          "the module came back with the same token")
    check(http("GET", HELLO + "/health")[0] == 200, "hello serves after the restart")
    check(core.module("crasher").get("status") == "STOPPED", "the stopped crasher stays stopped")


def hold_port(port):
    """Binds port (once the module that had it is gone) and listens: another program."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.time() + 10  # the module dies with the core, within moments
    while True:
        try:
            holder.bind(("127.0.0.1", port))
            break
        except OSError:
            if time.time() > deadline:
                holder.close()
                raise
            time.sleep(0.1)
    holder.listen(1)
    return holder


def test_port_busy_at_boot(core):
    """A port another program holds when the core starts: the module is FAILED with the
    reason and is tried again with the restart backoff (200 ms doubling to 1.6 s in this
    config), so it comes back by itself once the port is free. Stopping it ends the
    retries; the next start of the core tries it anyway."""
    port = int(HELLO.rsplit(":", 1)[1].split("/")[0])
    core.kill9()
    holder = hold_port(port)
    try:
        check(core.start(), "the core starts with hello's port held by another program")
        rec = core.wait_status("hello", ["FAILED"], 40)
        reason = rec.get("status_reason", "")
        check(rec.get("status") == "FAILED" and "already in use" in reason
              and "next attempt in" in reason,
              "hello is FAILED, saying its port is in use and when it is tried again (%s: %s)"
              % (rec.get("status"), reason))
        # Attempts at ~0.2, 0.6, 1.4, 3 s after the first: each fails the same way, and
        # the delay doubles to its cap.
        deadline = time.time() + 8
        while time.time() < deadline:
            rec = core.module("hello")
            if rec.get("status") == "FAILED" and "next attempt in 1.6 s" in rec.get(
                    "status_reason", ""):
                break
            time.sleep(0.1)
        check(rec.get("status") == "FAILED" and "already in use" in rec.get("status_reason", "")
              and "next attempt in 1.6 s" in rec.get("status_reason", ""),
              "while the port is held hello stays FAILED, the backoff grown to its cap "
              "(%s: %s)" % (rec.get("status"), rec.get("status_reason")))
    finally:
        holder.close()
    rec = core.wait_status("hello", ["RUNNING"], 15)
    check(rec.get("status") == "RUNNING", "once the port is free hello is back, with no "
          "restart of the core (%s: %s)" % (rec.get("status"), rec.get("status_reason")))
    check(http("GET", HELLO + "/health")[0] == 200, "hello serves again")

    # A module stopped while its retries run stays stopped; the next core start tries it.
    core.kill9()
    holder = hold_port(port)
    try:
        check(core.start(), "the core starts again with the port held")
        rec = core.wait_status("hello", ["FAILED"], 40)
        check(rec.get("status") == "FAILED", "hello is FAILED again (%s)" % rec.get("status"))
        deadline = time.time() + 10
        status = None
        while time.time() < deadline:  # 409 while an attempt holds the module: ask again
            status, rec = core.call("POST", "/modules/hello/stop")
            if status != 409:
                break
            time.sleep(0.1)
        check(status == 200 and rec.get("status") == "STOPPED",
              "hello can be stopped while its start is retried (%s %s)" % (status, rec))
    finally:
        holder.close()
    time.sleep(3)  # past every attempt the backoff would have made
    rec = core.module("hello")
    check(rec.get("status") == "STOPPED", "stopped, hello is not tried again (%s: %s)"
          % (rec.get("status"), rec.get("status_reason")))
    status, rec = core.call("POST", "/modules/hello/start")
    check(status == 200 and rec.get("status") == "RUNNING", "started by hand, hello runs "
          "(%s %s)" % (status, rec.get("status") if isinstance(rec, dict) else rec))
    check(http("GET", HELLO + "/health")[0] == 200, "hello serves")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    args = parser.parse_args()
    C.build = os.path.abspath(args.build)
    if os.geteuid() != 0 or not shutil.which("bwrap"):
        print("skipped: needs root and bubblewrap\n0 passed, 0 failed")
        return 0
    global HOSTILE, HELLO
    for name in ("hello", "hostile", "crasher", "lazy", "waker"):
        PORTS[name] = pick_module_port()
    HOSTILE = "http://127.0.0.1:%d" % PORTS["hostile"]
    HELLO = "http://127.0.0.1:%d" % PORTS["hello"]
    harness.workdir("mc-sandbox-", """# test config: short supervision intervals
[sandbox]
test_timeout_s = 30
health_timeout_s = 20
stop_grace_s = 2
restart_base_ms = 200
restart_max_ms = 1600
crashloop_exits = 4
crashloop_window_s = 60
health_interval_ms = 500
health_failures = 3
health_grace_s = 1
idle_stop_s = 3

[modules.hello]
secret_setting = "the core's config must stay hidden"
""")
    core = C.daemon = Core(free_port())
    try:
        if check(core.start(), "the core starts"):
            test_isolation(core, C.config)
            test_usage_and_logs(core)
            test_health_restart(core)
            test_crash_loop(core)
            test_on_demand(core)
            test_on_demand_event(core)
            test_kill9(core)
            test_port_busy_at_boot(core)
    finally:
        core.stop()
        left = module_processes(C.data)
        check(not left, "no module process is left after the core stops (%s)" % left)
        if failed:
            print("---- core log (tail) ----")
            print(log_since(0))
        shutil.rmtree(C.tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
