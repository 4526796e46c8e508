#!/usr/bin/env python3
"""Scenario 1: the gateway ceiling, three servers, one client, one run.

  core     GET /api/v1/devices with a module token: route table, authentication
           (sha256 + token table), rate limit (GCRA; the limit is raised to 10^6/s so
           that nothing is refused but every request still spends a unit), permission,
           one request/reply to the devices actor, JSON, one write
  hello    bench/civetweb_hello: the same civetweb, options and thread count, one
           handler writing a fixed JSON in one mg_write
  nginx    nginx `return 200` with the same JSON (worker_processes auto)

mc-load in closed loop (K connections, each sending the next request when the previous
one is answered) for the ceiling, at several K, the targets interleaved; then an
open-loop latency-vs-offered-load sweep of each target. Writes docs/bench/s1_ceiling.csv,
s1_latency_vs_load.dat and s1_summary.json."""
import json
import os
import shutil
import subprocess
import tempfile

import benchlib as b

THREADS = 64


def nginx_conf(tmp, port):
    return f"""worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; return 200 '{{"devices": []}}'; }}
    }}
}}
"""


def main():
    args = b.parse_args("scenario 1: gateway ceiling")
    ks = [16] if args.quick else [4, 16, 64]
    duration = 3 if args.quick else 6
    step = 2 if args.quick else 3
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise SystemExit("nginx is not installed: run bench/setup.sh")
    tmp = tempfile.mkdtemp(prefix="mc-bench-nginx-")
    rows, summary = [], {"threads": THREADS, "ks": ks, "duration_s": duration}
    series_path = os.path.join(args.out, "s1_latency_vs_load.dat")
    if os.path.exists(series_path):
        os.unlink(series_path)
    hello_port, nginx_port = b.free_port(), b.free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(nginx_conf(tmp, nginx_port))
    core = b.Core(args, threads=THREADS, rate=1000000, burst=1000000, name="s1")
    hello = b.Proc([b.prog(args, "civetweb_hello"), str(hello_port), str(THREADS)], "hello")
    ngx = b.Proc([nginx, "-c", os.path.join(tmp, "nginx.conf")], "nginx")
    try:
        core.start()
        b.wait_port(hello_port)
        b.wait_port(nginx_port)
        tokens = core.token_file(max(ks) + 64)
        targets = {
            "core": ["--url", core.url + "/devices", "--tokens", tokens],
            "hello": ["--url", f"http://127.0.0.1:{hello_port}/api/v1/devices", "--no-auth"],
            "nginx": ["--url", f"http://127.0.0.1:{nginx_port}/api/v1/devices", "--no-auth"],
        }
        # A short warm-up of each (first connections, page faults, LevelDB caches).
        for name, target in targets.items():
            b.mc_load(args, *target, "--closed", 8, "--duration", 1, "--label", "warmup",
                      "--quiet")
        for k in ks:
            for name, target in targets.items():
                b.log(f"== s1 ceiling: {name}, closed loop K={k}")
                row = b.mc_load(args, *target, "--closed", k, "--duration", duration,
                                "--requests", 3000000, "--timeout-ms", 2000,
                                "--label", f"{name}-K{k}")[0]
                row["target"], row["k"] = name, k
                rows.append(row)
        # Open loop: latency against offered load, 32 connections, aggregate rates.
        loads = [2000, 5000, 10000, 15000, 20000, 25000, 30000, 40000, 50000]
        if args.quick:
            loads = [2000, 10000]
        conns = 32
        for name, target in targets.items():
            b.log(f"== s1 latency vs load: {name}")
            rates = ",".join(f"{load / conns:g}" for load in loads)
            b.mc_load(args, *target, "--modules", conns, "--rates", rates, "--duration", step,
                      "--timeout-ms", 2000, "--series", series_path, "--label", name, "--quiet")
        summary["rss_kib_after"] = b.rss_kib(core.pid)
    finally:
        core.stop()
        hello.stop()
        ngx.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    b.write_csv(os.path.join(args.out, "s1_ceiling.csv"), rows,
                ["target", "k"] + [k for k in rows[0] if k not in ("target", "k")])
    best = {}
    for row in rows:
        t = row["target"]
        best[t] = max(best.get(t, 0.0), float(row["ok_rps"]))
    summary["best_rps"] = best
    summary["by_k"] = {str(k): {r["target"]: float(r["ok_rps"]) for r in rows if r["k"] == k}
                       for k in ks}
    summary["p99_by_k"] = {str(k): {r["target"]: int(r["p99_us"]) for r in rows if r["k"] == k}
                           for k in ks}
    summary["ratio_core_hello"] = best["core"] / best["hello"]
    summary["ratio_core_nginx"] = best["core"] / best["nginx"]
    summary["ratio_hello_nginx"] = best["hello"] / best["nginx"]
    with open(os.path.join(args.out, "s1_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    b.log(f"s1: best req/s {best}; core/hello {summary['ratio_core_hello']:.2f}, "
          f"core/nginx {summary['ratio_core_nginx']:.2f}")


if __name__ == "__main__":
    main()
