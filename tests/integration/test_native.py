#!/usr/bin/env python3
"""The native SDK transport (docs/sdk-protocol.md) against the real core.

    python3 tests/integration/test_native.py --build <build dir>

Drives build/tests/sdk_probe (a minimal native client written to the protocol
document) against a real modcored with the probe fixture module installed: HELLO with
a good and a wrong token, frames before HELLO, a request/response, the shared rate
limit (HTTP and native spend one bucket), events pushed with ACK and redelivered after
a NACK in publish order, a CLI invocation through the native session, and the session
ending when the module is uninstalled. The daemon runs with test_e2e's config, under
the shared harness (harness.py).
Last line: "N passed, M failed".
"""
import http.client
import json
import os
import subprocess
import sys
import time

import harness
from harness import admin, module_get, pick_module_port, probe_zip, require, test

TCP_PORT = harness.free_port()  # the CURVE endpoint for remote modules
CONFIG = harness.sandbox_config() + f"""
[install]
max_total_mb = 8

[sdk]
tcp_endpoint = "tcp://127.0.0.1:{TCP_PORT}"
queue_max = 8  # small, so that a burst of requests that need a worker overflows it
"""


class Ctx(harness.Ctx):
    """State shared by the tests, in order (the daemon, its dirs and admin token: see
    harness.Ctx)."""

    probe_port = None
    probe_token = None


C = harness.use(Ctx())


def endpoint():
    return f"ipc://{C.data}/run/modcore.sock"


def probe(*args, timeout=30):
    """Runs sdk_probe; returns its JSON output lines."""
    argv = [os.path.join(C.build, "tests", "sdk_probe"), endpoint(), *args]
    out = subprocess.run(argv, capture_output=True, timeout=timeout, text=True)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    require(lines, f"sdk_probe {' '.join(args[1:])}: no output; stderr: {out.stderr}")
    return lines


def publish(seq):
    r = admin("POST", "/events/publish", content_type="application/json",
                  body=json.dumps({"type": "native.test", "payload": {"seq": seq}}))
    require(r.status == 201, f"publish: {r!r}")


@test
def test_01_install_probe():
    C.probe_port = pick_module_port()
    zip_bytes = probe_zip("nprobe", C.probe_port,
                              permissions=["events.subscribe", "events.publish", "device.read"])
    r = admin("POST", "/modules/install", body=zip_bytes, content_type="application/zip")
    require(r.status == 201 and r.json["status"] == "RUNNING", f"install: {r!r}")
    got = module_get(C.probe_port, "/token")
    require(got and got[0] == 200, f"probe /token: {got}")
    token = got[1]["token"]
    C.probe_token = token


@test
def test_02_hello():
    require(probe("wrong-token", "hello")[0] == {"error": "UNAUTHORIZED"}, "wrong token accepted")
    welcome = probe(C.probe_token, "hello")[0]
    require(welcome.get("welcome") == "nprobe", f"HELLO: {welcome}")
    require(probe(C.probe_token, "noauth")[0] == {"error": "NOT_AUTHENTICATED"},
            "a request before HELLO was not refused")


@test
def test_03_request():
    time.sleep(1.2)
    out = probe(C.probe_token, "request", "GET", "/modules/self")[0]
    require(out["status"] == 200 and out["body"]["name"] == "nprobe", f"self: {out}")
    out = probe(C.probe_token, "request", "GET", "/modules")[0]
    require(out["status"] == 403 and out["body"]["error"] == "FORBIDDEN",
            f"management route must be refused as over HTTP: {out}")
    out = probe(C.probe_token, "request", "GET", "/nosuch")[0]
    require(out["status"] == 404, f"unknown route: {out}")


@test
def test_04_rate_limit_shared():
    # GET /devices is answered in the transport's own loop (never queued for a worker).
    time.sleep(1.5)  # a full bucket
    out = probe(C.probe_token, "burst", "300", "GET", "/devices")[0]
    elapsed = out["elapsed_ms"] / 1000.0
    expected = 20 + 100 * elapsed - 1  # the HELLO spent one unit
    print(f"    native burst: {out}; expected about {expected:.1f} accepted")
    require(out["answered"] == 300, f"not every request answered: {out}")
    require(abs(out["ok"] - expected) <= 3, f"accepted {out['ok']}, expected {expected:.1f}")
    require(out["ok"] + out["limited"] == 300, f"unexpected statuses: {out}")
    # HTTP and native calls spend one bucket: 10 HTTP calls first, then a native burst.
    time.sleep(1.5)
    conn = http.client.HTTPConnection("127.0.0.1", C.daemon.port, timeout=5)
    t0 = time.monotonic()
    for _ in range(10):
        conn.request("GET", "/api/v1/modules/self",
                     headers={"Authorization": "Bearer " + C.probe_token})
        resp = conn.getresponse()
        resp.read()
        require(resp.status == 200, f"HTTP call {resp.status}")
    conn.close()
    out = probe(C.probe_token, "burst", "100", "GET", "/devices")[0]
    bound = 20 - 10 - 1 + 100 * (time.monotonic() - t0) + 2
    print(f"    after 10 HTTP calls, native burst accepted {out['ok']} (bound {bound:.1f})")
    require(out["ok"] <= bound, f"the native burst did not see the HTTP spends: {out}")


def overloaded_metric():
    r = harness.request(C.daemon.port, "GET", "/metrics",
                        headers={"Authorization": "Bearer " + C.admin})
    require(r.status == 200, f"/metrics: {r!r}")
    for line in r.body.decode().splitlines():
        if line.startswith("modcore_sdk_overloaded_total "):
            return float(line.split()[1])
    raise AssertionError("no modcore_sdk_overloaded_total in /metrics")


@test
def test_04b_overload_sheds():
    """Requests that need a worker beyond [sdk] queue_max are refused at once with 503
    OVERLOADED and Retry-After, unrun (no rate-limit unit spent); the session and the
    core go on serving."""
    time.sleep(1.5)
    before = overloaded_metric()
    out = probe(C.probe_token, "burst", "2000", "GET", "/modules/self")[0]
    print(f"    burst of 2000 with queue_max 8: {out}")
    require(overloaded_metric() - before == out["overloaded"],
            f"modcore_sdk_overloaded_total does not count the {out['overloaded']} refusals")
    require(out["answered"] == 2000, f"not every request answered: {out}")
    require(out["overloaded"] > 0, f"no request was refused as OVERLOADED: {out}")
    require(out["ok"] + out["limited"] + out["overloaded"] == 2000, f"other statuses: {out}")
    require(out["retry_after_min"] >= 1, f"503 without Retry-After: {out}")
    # Refused requests spent no unit: the accepted ones still follow 20 + 100 t.
    require(out["ok"] <= 20 + 100 * out["elapsed_ms"] / 1000.0 + 3, f"bucket: {out}")
    time.sleep(1.5)
    r = probe(C.probe_token, "request", "GET", "/modules/self")[0]
    require(r["status"] == 200, f"the session no longer serves after the overload: {r}")


@test
def test_05_events_ack_and_redelivery():
    time.sleep(1.5)
    argv = [os.path.join(C.build, "tests", "sdk_probe"), endpoint(), C.probe_token, "listen",
            "native.*", "5", "20", "nack-first"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    C.extra_procs.append(proc)
    first = json.loads(proc.stdout.readline())
    require(first.get("subscribed") == 201, f"subscribe native: {first}")
    for seq in range(5):
        publish(seq)
    out, _ = proc.communicate(timeout=30)
    lines = [json.loads(x) for x in out.splitlines()]
    events = [x for x in lines if "event" in x]
    seqs = [x["event"]["payload"]["seq"] for x in events]
    require(seqs == list(range(5)), f"events out of order or missing: {seqs}")
    require(events[0]["attempt"] >= 2, f"the NACKed first event was not redelivered: {events[0]}")
    r = admin("GET", "/events/deliveries?module=nprobe&status=delivered")
    require(r.status == 200 and len(r.json["deliveries"]) >= 5, f"deliveries: {r!r}")


@test
def test_06_cli_over_native():
    time.sleep(1.2)
    argv = [os.path.join(C.build, "tests", "sdk_probe"), endpoint(), C.probe_token, "serve-cli",
            "20"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    C.extra_procs.append(proc)
    first = json.loads(proc.stdout.readline())
    require(first.get("registered") == 201, f"CLI spec: {first}")
    r = admin("POST", "/cli/invoke/nprobe", content_type="application/json",
                  body=json.dumps({"subcommand": "echo", "args": {"text": "hi"}}))
    require(r.status == 200 and r.json["exit_code"] == 7 and "hi" in r.json["stdout"],
            f"invoke: {r!r}")
    r = admin("POST", "/cli/invoke/nprobe", content_type="application/json",
                  body=json.dumps({"subcommand": "echo", "args": {}}))
    require(r.status == 400 and r.json["error"] == "INVALID_ARGS", f"missing arg: {r!r}")
    # modctl MODULE SUBCOMMAND: validated against the spec, run through the core, the
    # module's output printed and its exit code returned.
    def modctl(*words):
        return harness.modctl(*words, timeout=60, clean_env=False)

    p = modctl("nprobe", "echo", "--text", "hello there")
    require(p.returncode == 7 and "hello there" in p.stdout, f"modctl nprobe echo: {p}")
    p = modctl("nprobe", "echo", "positional")
    require(p.returncode == 7 and "positional" in p.stdout, f"positional value: {p}")
    p = modctl("nprobe", "--help")
    require(p.returncode == 0 and "echo" in p.stdout and "SUBCOMMAND" in p.stdout,
            f"module --help: {p}")
    p = modctl("nprobe", "echo", "--help")
    require(p.returncode == 0 and "--text" in p.stdout and "required" in p.stdout,
            f"subcommand --help: {p}")
    p = modctl("nprobe", "echo")
    require(p.returncode == 2 and "--text" in p.stderr, f"missing required arg: {p}")
    p = modctl("nprobe", "echo", "--nosuch", "x")
    require(p.returncode == 2 and "no argument" in p.stderr, f"unknown arg: {p}")
    p = modctl("nprobe", "nosuch")
    require(p.returncode == 2 and "no subcommand" in p.stderr, f"unknown subcommand: {p}")
    p = modctl("nosuchmodule", "x")
    require(p.returncode == 1 and "nosuchmodule" in p.stderr, f"unknown module: {p}")
    proc.kill()
    proc.wait()


@test
def test_06b_curve_over_tcp():
    """tcp:// with CURVE: the core's public key from <data>/run/sdk.pub lets a client in;
    without CURVE nothing answers; the secret half stays under secure/ (0600)."""
    with open(os.path.join(C.data, "run", "sdk.pub"), encoding="ascii") as f:
        server_key = f.read().strip()
    require(len(server_key) == 40, f"sdk.pub: {server_key!r}")
    secret = os.path.join(C.data, "secure", "sdk.cert")
    require(os.stat(secret).st_mode & 0o077 == 0, "secure/sdk.cert is readable by others")
    tcp = f"tcp://127.0.0.1:{TCP_PORT}"
    argv = [os.path.join(C.build, "tests", "sdk_probe"), tcp, C.probe_token, "hello"]
    env = dict(os.environ, MC_SDK_SERVERKEY=server_key)
    time.sleep(1.2)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    require('"welcome":"nprobe"' in out.stdout, f"CURVE HELLO: {out.stdout} {out.stderr}")
    env.pop("MC_SDK_SERVERKEY")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    require("NO_ANSWER" in out.stdout, f"a plain-text client got an answer: {out.stdout}")


@test
def test_07_uninstall_ends_session():
    argv = [os.path.join(C.build, "tests", "sdk_probe"), endpoint(), C.probe_token, "listen",
            "native.*", "1", "6"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    C.extra_procs.append(proc)
    time.sleep(1.5)
    r = admin("DELETE", "/modules/nprobe")
    require(r.status == 200, f"uninstall: {r!r}")
    require(probe(C.probe_token, "hello")[0] == {"error": "UNAUTHORIZED"},
            "the revoked token still opens a session")
    proc.kill()
    proc.wait()


if __name__ == "__main__":
    sys.exit(harness.run(__doc__, CONFIG, tmp_prefix="modcore-native-",
                         required=("modcored", "modctl", "modcore-launch", "examples/hello.zip"),
                         build_help="the build dir (modcored, modctl, examples)"))
