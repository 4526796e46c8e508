"""Shared helpers of the benchmark scenarios (Python standard library only).

Every scenario starts its own modcored on 127.0.0.1 (a free port, a temporary data dir,
a generated config), sends traffic only there, bounds every run in count and time, and
writes raw CSV under docs/bench/. Programs come from the build dir: --build DIR, else
$MC_BUILD, else build-bench, else build."""
import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "docs", "bench")
NOPROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def isolate_network():
    """Re-runs this scenario in a network namespace of its own (a fresh loopback), when
    it can (root, unshare, ip): module ports 8100..8200 and free ports are then this
    scenario's alone, and no other program on the machine sees or sends its traffic.
    MC_BENCH_SHARED_NET=1 keeps the shared network."""
    if os.environ.get("MC_BENCH_NETNS") or os.environ.get("MC_BENCH_SHARED_NET"):
        return
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    if not unshare or not os.path.exists(ip) or os.geteuid() != 0:
        return
    probe = subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return
    env = dict(os.environ, MC_BENCH_NETNS="1")
    cmd = [unshare, "-n", "sh", "-c", f'"{ip}" link set lo up && exec "$0" "$@"',
           sys.executable] + sys.argv
    sys.stdout.flush()
    os.execve(unshare, cmd, env)


def parse_args(description, extra=None):
    isolate_network()
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--build", default=os.environ.get("MC_BUILD"))
    p.add_argument("--out", default=OUT, help="where the raw CSV goes (docs/bench)")
    p.add_argument("--quick", action="store_true", help="shorter runs (smoke checks)")
    if extra:
        extra(p)
    args = p.parse_args()
    if not args.build:
        for cand in ("build-bench", "build"):
            if os.path.exists(os.path.join(ROOT, cand, "modcored")):
                args.build = os.path.join(ROOT, cand)
                break
    if not args.build or not os.path.exists(os.path.join(args.build, "modcored")):
        sys.exit("no build dir with modcored: give --build DIR")
    args.build = os.path.abspath(args.build)
    os.makedirs(args.out, exist_ok=True)
    return args


def prog(args, name):
    for sub in ("bench", "."):
        path = os.path.join(args.build, sub, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{name} is not built in {args.build}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(*parts):
    print(*parts, flush=True)


def http(url, method="GET", body=None, token=None, timeout=30, raw=None, ctype=None):
    """Returns (status, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", ctype or "application/json")
    try:
        with NOPROXY.open(req, timeout=timeout) as r:
            text = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read(), e.code
    try:
        return status, json.loads(text or b"{}")
    except ValueError:
        return status, text.decode(errors="replace")


def rss_kib(pid):
    """VmRSS of a process, KiB (from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Core:
    """A modcored of its own: temp data dir, free port, generated config."""

    def __init__(self, args, threads=64, keep_alive_ms=5000, rate=100, burst=20, bench=True,
                 sdk_workers=4, extra="", name="core"):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix=f"mc-bench-{name}-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.data = os.path.join(self.dir, "data")
        self.endpoint = f"ipc://{self.data}/run/modcore.sock"
        self.log_path = os.path.join(self.dir, "modcored.log")
        self.config = os.path.join(self.dir, "modcored.toml")
        with open(self.config, "w") as f:
            f.write(f'[core]\ndata_dir = "{self.data}"\nlisten = "127.0.0.1:{self.port}"\n'
                    f"[gateway]\nthreads = {threads}\nkeep_alive_ms = {keep_alive_ms}\n"
                    f"max_upload_mb = 64\n"
                    f"[rate_limit]\nrate = {rate}\nburst = {burst}\n"
                    f"[sdk]\nworkers = {sdk_workers}\n"
                    f"[sandbox]\nstop_grace_s = 2\n"
                    + ("[bench]\ntoken_route = true\n" if bench else "") + extra)
        self.proc = None
        self.admin = None

    def start(self, timeout=30):
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(self.args.build, "modcored"), "--config",
                                      self.config], stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("modcored exited: " + open(self.log_path).read()[-2000:])
            try:
                status, _ = http(self.url + "/health", timeout=2)
                if status == 200 and os.path.exists(os.path.join(self.data, "admin.token")):
                    self.admin = open(os.path.join(self.data, "admin.token")).read().strip()
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("modcored did not answer /health")

    @property
    def pid(self):
        return self.proc.pid

    def tokens(self, count, permissions=("device.read",)):
        status, body = http(self.url + "/bench/tokens", "POST",
                            {"count": count, "permissions": list(permissions)}, self.admin,
                            timeout=120)
        if status != 201:
            raise RuntimeError(f"bench tokens: {status} {body}")
        return body["tokens"]

    def token_file(self, count, permissions=("device.read",)):
        path = os.path.join(self.dir, f"tokens-{count}.txt")
        with open(path, "w") as f:
            f.write("\n".join(self.tokens(count, permissions)) + "\n")
        return path

    def admin_file(self):
        path = os.path.join(self.dir, "admin.txt")
        with open(path, "w") as f:
            f.write(self.admin + "\n")
        return path

    def install(self, zip_path, timeout=180):
        with open(zip_path, "rb") as f:
            data = f.read()
        return http(self.url + "/modules/install", "POST", token=self.admin, raw=data,
                    ctype="application/zip", timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def mc_load(args, *options, timeout=300):
    """Runs mc-load; returns the CSV rows it wrote (dicts), echoing its summary."""
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as tmp:
        csv_path = tmp.name
    os.unlink(csv_path)
    cmd = [prog(args, "mc-load"), "--csv", csv_path] + [str(o) for o in options]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise RuntimeError(f"mc-load failed ({r.returncode})")
    rows = read_csv(csv_path)
    os.unlink(csv_path)
    return rows


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows, fields=None):
    """Writes rows (dicts) to path, replacing it."""
    if not rows:
        return
    fields = fields or list(rows[0].keys())
    for row in rows:
        for k in row:
            if k not in fields:
                fields.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow(row)


def make_zip(path, files, modes=None):
    """files: {name: bytes}; modes: {name: 0o755}."""
    modes = modes or {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (modes.get(name, 0o644) & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def manifest(name, type_="SYSTEM", port=None, entry=None, permissions=(), test=None, **more):
    m = {"name": name, "version": "1.0.0", "type": type_, "api_version": "1.0",
         "runtime_mode": "always_on", "permissions": list(permissions),
         "entry": entry or ["sleep", "86400"], "description": "benchmark module"}
    if port is not None:
        m["port"] = port
    if test is not None:
        m["test"] = test
    m.update(more)
    return json.dumps(m).encode()


class Proc:
    """A helper process (baseline server) stopped on exit."""

    def __init__(self, cmd, name, cwd=None):
        self.log = tempfile.NamedTemporaryFile(prefix=f"mc-bench-{name}-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
