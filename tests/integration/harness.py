"""The shared harness of the integration tests (tests/integration/test_*.py): the real
modcored on a free port with a temporary data dir, its log, HTTP helpers for the core's
API and for module processes, module archives, module ports, and the runner that prints
"N passed, M failed" last. Python standard library only.

A test file subclasses Ctx with the state its tests share (and the settings where it
differs from the defaults), hands an instance to use(), registers its tests with @test
(@unit: a test that needs no daemon) and ends with `sys.exit(run(...))`:

    class Ctx(harness.Ctx):
        start_timeout = 20
        probe_token = None

    C = harness.use(Ctx())

    @test
    def test_01_something():
        r = admin("GET", "/modules")
        ...

    if __name__ == "__main__":
        sys.exit(harness.run(__doc__, CONFIG, tmp_prefix="modcore-x-", required=(...)))
"""
import argparse
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
import warnings
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
PROBE_DIR = os.path.join(SOURCE_DIR, "tests", "fixtures", "probe")
MODULE_PORTS = range(8100, 8201)


def sandbox_config(stop_grace_s=3):
    """The [sandbox] section the test configs start with (test_sandbox.py's is its own):
    short install-test and health timeouts, a short stop grace."""
    return ("[sandbox]\n"
            "test_timeout_s = 20\n"
            "health_timeout_s = 15\n"
            f"stop_grace_s = {stop_grace_s}\n")


# --- the state of a run ---------------------------------------------------------------------

class Ctx:
    """State shared by one file's tests, in order; a file subclasses it with its own
    fields. The class attributes below are settings, overridden where a file differs."""

    start_timeout = 15  # s for modcored to answer GET /health after a start
    log_banner = True  # write "===== test: starting <argv>" to the log before a start
    log_limit = 6000  # characters of modcored's log printed under a failing test
    resp_limit = 600  # bytes of a body shown by repr(Resp)
    api_timeout = 120  # s, default timeout of an api() call
    admin_retry = True  # admin() retries an answer 429 (up to 5 calls)
    admin_wait = None  # s between those calls; None: the answer's Retry-After, at most 2 s
    modctl_timeout = 120  # s, default timeout of a modctl() run

    def __init__(self):
        self.build = None  # build dir
        self.tmp = None  # temp dir of this run
        self.data = None  # the daemon's data dir
        self.config = None  # its config file
        self.log_path = None  # its stderr/stdout
        self.daemon = None  # the Daemon under test
        self.admin = None  # admin token
        self.used_ports = set()  # module ports handed out in this run
        self.extra_procs = []  # other processes started by tests (killed at the end)
        self.notes = []  # things worth saying again after the last test

    def on_admin_token(self, token):
        """Called with the admin token after every start of the daemon."""

    def on_response(self, resp):
        """Called with every answer of api()."""


C = None  # the Ctx of the running test file (see use())


def use(ctx):
    """Makes ctx the state every helper here works on; returns it."""
    global C
    C = ctx
    Resp.limit = ctx.resp_limit
    return ctx


def workdir(prefix, config_text):
    """A new temp dir for this run: C.tmp, with C.data (not created), C.config (written
    with config_text) and C.log_path (created empty) in it."""
    C.tmp = tempfile.mkdtemp(prefix=prefix)
    C.data = os.path.join(C.tmp, "data")
    C.config = os.path.join(C.tmp, "modcored.toml")
    C.log_path = os.path.join(C.tmp, "modcored.log")
    with open(C.config, "w", encoding="utf-8") as f:
        f.write(config_text)
    open(C.log_path, "ab").close()


# --- small helpers -----------------------------------------------------------------------

class Failed(AssertionError):
    """A test's verdict: one or more expectations did not hold."""


def log(text):
    print(text, flush=True)


def note(text):
    """Something the core did not do as the spec says, without failing: printed now and
    again at the end."""
    C.notes.append(text)
    log("    note: " + text)


def wait_for(predicate, timeout, interval=0.1):
    """Calls predicate until it returns a true value or timeout seconds pass; returns
    the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


class Check:
    """Collects failed expectations so one test reports all of them."""

    def __init__(self):
        self.problems = []

    def expect(self, condition, message):
        if not condition:
            self.problems.append(message)
        return bool(condition)

    def done(self):
        if self.problems:
            raise Failed("\n".join(" - " + p for p in self.problems))


def require(condition, message):
    if not condition:
        raise Failed(message)


# --- ports --------------------------------------------------------------------------------

def free_port():
    """A free TCP port on 127.0.0.1 (any range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_module_port():
    """A port in 8100..8200 that is free now and not yet used in this run (random, so
    parallel runs rarely collide)."""
    candidates = [p for p in MODULE_PORTS if p not in C.used_ports]
    random.shuffle(candidates)
    for port in candidates:
        if port_bindable(port):
            C.used_ports.add(port)
            return port
    raise Failed("no free port left in 8100..8200")


# --- the daemon ---------------------------------------------------------------------------

class Daemon:
    """modcored on 127.0.0.1:port with a data dir (and a config file); its output goes
    to C.log_path."""

    def __init__(self, data, port, config=None):
        self.data = data
        self.port = port
        self.config = config
        self.proc = None

    def argv(self):
        argv = [os.path.join(C.build, "modcored"), "--data-dir", self.data,
                "--listen", f"127.0.0.1:{self.port}"]
        if self.config:
            argv += ["--config", self.config]
        return argv

    def start(self, timeout=None):
        """Starts it and waits until it answers GET /health (C.start_timeout s by
        default); sets C.admin. Raises Failed if it does not become ready."""
        timeout = C.start_timeout if timeout is None else timeout
        with open(C.log_path, "ab") as log_file:
            if C.log_banner:
                log_file.write(f"\n===== test: starting {' '.join(self.argv())}\n".encode())
                log_file.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=log_file)
        token_path = os.path.join(self.data, "admin.token")

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            if not os.path.exists(token_path):
                return None
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/api/v1/health")
                ok = conn.getresponse().status == 200
                conn.close()
                return "ok" if ok else None
            except (OSError, http.client.HTTPException):
                return None

        state = wait_for(ready, timeout, 0.05)
        if state != "ok":
            raise Failed(f"modcored did not become ready within {timeout} s "
                         f"(exit status {self.proc.poll()})")
        with open(token_path, encoding="ascii") as f:
            C.admin = f.read().strip()
        C.on_admin_token(C.admin)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM, wait; SIGKILL on timeout. Returns the exit status (None if never
        started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"modcored did not stop within {timeout} s after SIGTERM: killing it")
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def log_since(offset, limit=None):
    """modcored's log from byte offset on (its last C.log_limit characters)."""
    limit = C.log_limit if limit is None else limit
    try:
        with open(C.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    if len(text) > limit:
        text = "...\n" + text[-limit:]
    return text


def modctl(*args, url=None, timeout=None, clean_env=True):
    """Runs <build>/modctl against the daemon under test (or url); clean_env: without
    the caller's MODCORE_* variables."""
    argv = [os.path.join(C.build, "modctl"), "--data-dir", C.data,
            "--url", url or f"http://127.0.0.1:{C.daemon.port}"] + list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCORE_")} \
        if clean_env else None
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=C.modctl_timeout if timeout is None else timeout, env=env)


# --- HTTP ---------------------------------------------------------------------------------

class Resp:
    limit = 600  # bytes of the body repr() shows (set by use())

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"HTTP {self.status} {self.body[:self.limit].decode('utf-8', 'replace')}"


def request(port, method, path, body=None, headers=None, timeout=30, content_type=None):
    """One request to 127.0.0.1:port on a new connection. A body that is not bytes or
    str is sent as JSON (Content-Type application/json unless content_type says
    otherwise)."""
    h = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body).encode()
        content_type = content_type or "application/json"
    if content_type:
        h["Content-Type"] = content_type
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return Resp(resp.status, resp.headers, data)


def api(method, path, body=None, token=None, content_type=None, headers=None, timeout=None,
        port=None):
    """One request to the core's API (path below /api/v1, sent as given) on a new
    connection; C.api_timeout s by default."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    r = request(port or C.daemon.port, method, "/api/v1" + path, body, h,
                C.api_timeout if timeout is None else timeout, content_type)
    C.on_response(r)
    return r


def admin(method, path, body=None, **kwargs):
    """A call with the admin token. The admin token is rate-limited too: with
    C.admin_retry an answer 429 (possible in a quick series of calls) is retried."""
    if not C.admin_retry:
        return api(method, path, body, token=C.admin, **kwargs)
    for _ in range(5):
        r = api(method, path, body, token=C.admin, **kwargs)
        if r.status != 429:
            return r
        time.sleep(C.admin_wait if C.admin_wait is not None
                   else min(float(r.headers.get("Retry-After") or 1), 2.0))
    return r


def is_error(r, status, code=None, detail=True):
    """True if r is `status` with a JSON {"error", "detail"} body (and error == code);
    detail=False: the "detail" key may be missing."""
    return (r.status == status and isinstance(r.json, dict) and "error" in r.json
            and (not detail or "detail" in r.json) and (code is None or r.json["error"] == code))


def module_call(port, method, path, body=None, timeout=5.0):
    """A request to a module's own HTTP server (a body as JSON): (status, json or None),
    or None when nothing answers."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, None


def module_get(port, path, timeout=2.0):
    """GET http://127.0.0.1:port/path on a module: (status, json or None), or None when
    nothing answers."""
    return module_call(port, "GET", path, timeout=timeout)


# --- archives -----------------------------------------------------------------------------

def make_zip(entries):
    """entries: (name or ZipInfo, bytes or str). Duplicate names are allowed."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in entries:
                z.writestr(name, data)
    return buf.getvalue()


def probe_manifest(name="probe", port=None, **changes):
    """tests/fixtures/probe's manifest with name, port and other fields changed."""
    with open(os.path.join(PROBE_DIR, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["name"] = name
    manifest["port"] = port
    manifest.update(changes)
    return manifest


def probe_zip(name="probe", port=None, manifest=None, extra=(), **changes):
    """A module archive of tests/fixtures/probe (it reveals its own token at GET /token)
    with that manifest (by default probe_manifest(name, port, **changes)) and extra
    entries."""
    if manifest is None:
        manifest = probe_manifest(name, port, **changes)
    with open(os.path.join(PROBE_DIR, "main.py"), encoding="utf-8") as f:
        main = f.read()
    return make_zip([("manifest.json", json.dumps(manifest, indent=2)), ("main.py", main)]
                    + list(extra))


def example_zip(example, port, name=None, require_entries=()):
    """<build>/examples/<example>.zip with its manifest's port (and name) rewritten;
    fails the test if an entry of require_entries is missing."""
    out = io.BytesIO()
    with zipfile.ZipFile(os.path.join(C.build, "examples", example + ".zip")) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        names = src.namelist()
        for entry in require_entries:
            require(entry in names, f"{example}.zip has no {entry}: {names}")
        for info in src.infolist():
            data = src.read(info)
            if os.path.basename(info.filename) == "manifest.json":
                manifest = json.loads(data)
                manifest["port"] = port
                if name:
                    manifest["name"] = name
                data = json.dumps(manifest, indent=2).encode()
            dst.writestr(info, data)
    return out.getvalue()


# --- tests and the runner -----------------------------------------------------------------

TESTS = []


def test(fn):
    """Registers a test; they run in the order of registration."""
    TESTS.append(fn)
    return fn


def unit(fn):
    """Registers a test that needs no daemon (see run(lazy=True))."""
    fn.unit = True
    return test(fn)


def first_missing(required):
    """The first of these files (paths below the build dir) that does not exist, or None."""
    for name in required:
        path = os.path.join(C.build, name)
        if not os.path.exists(path):
            return path
    return None


def run(doc, config_text, *, tmp_prefix, required=(), build_help="the build dir",
        k_any=False, lazy=False, after_start=None):
    """Parses `--build DIR [-k SUBSTRING] [--keep]`, starts modcored with config_text in
    a new temp dir and runs the registered tests in order; prints "N passed, M failed"
    last and returns the exit status (1 if anything failed).

    required: files the build dir must have (checked before anything else). k_any: -k is
    a comma-separated list, a test runs if its name contains one of them.
    The daemon is started before the first test, and again before a test if it is not
    running; a test after which it is not running fails. lazy=True instead: unit tests
    run without it; it is started (and `required` checked) by the first other test,
    then after_start(that test) runs; a test finding it not running fails."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--build", required=True, help=build_help)
    parser.add_argument("-k", default="", help=(
        "run only tests whose name contains one of these comma-separated strings (later "
        "tests depend on earlier ones)") if k_any else "run only tests whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    C.build = os.path.abspath(args.build)
    missing = None if lazy else first_missing(required)
    if missing:
        print(f"missing {missing}: build first")
        print("0 passed, 1 failed")
        return 1
    if k_any:
        selected = [fn for fn in TESTS if any(k in fn.__name__ for k in args.k.split(","))]
    else:
        selected = [fn for fn in TESTS if args.k in fn.__name__]
    workdir(tmp_prefix, config_text)
    passed = failed = 0
    started = time.monotonic()

    def start_daemon():
        C.daemon = Daemon(C.data, free_port(), C.config)
        C.daemon.start()

    def daemon_started():
        log(f"modcored pid {C.daemon.proc.pid} on 127.0.0.1:{C.daemon.port}, data {C.data}")

    try:
        if not lazy:
            try:
                start_daemon()
            except Failed as error:
                print(f"FAIL start: {error}\n--- modcored log ---\n{log_since(0)}")
                print("0 passed, 1 failed")
                return 1
            daemon_started()
        for fn in selected:
            offset = os.path.getsize(C.log_path)
            t0 = time.monotonic()
            try:
                if lazy:
                    if not getattr(fn, "unit", False) and C.daemon is None:
                        missing = first_missing(required)
                        require(not missing, f"missing {missing}: build first")
                        start_daemon()
                        daemon_started()
                        if after_start:
                            after_start(fn)
                    if C.daemon is not None and not C.daemon.running():
                        raise Failed("modcored is not running")
                    fn()
                else:
                    if not C.daemon.running():
                        C.daemon.start()  # a previous test left it stopped or it died
                    fn()
                    # Every test leaves the daemon running: if it is gone, it crashed.
                    require(C.daemon.running(), f"modcored died during the test (exit "
                            f"status {C.daemon.proc.poll()}); see its log below")
            except Failed as error:
                failed += 1
                print(f"FAIL {fn.__name__} ({time.monotonic() - t0:.1f} s)\n{error}")
            except Exception:  # a broken test or an unexpected answer
                failed += 1
                print(f"FAIL {fn.__name__} ({time.monotonic() - t0:.1f} s)\n"
                      f"{traceback.format_exc()}")
            else:
                passed += 1
                log(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f} s)")
                continue
            if C.daemon is not None:
                print(f"--- modcored log during {fn.__name__} ---\n{log_since(offset)}---")
    finally:
        if C.daemon:
            status = C.daemon.stop()
            if status not in (0, None):
                print(f"note: modcored exited with status {status} at the end")
        for proc in C.extra_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if args.keep:
            print(f"kept {C.tmp}")
        else:
            shutil.rmtree(C.tmp, ignore_errors=True)
    for text in C.notes:
        print("note:", text)
    print(f"total {time.monotonic() - started:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
