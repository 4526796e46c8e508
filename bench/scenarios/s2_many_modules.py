#!/usr/bin/env python3
"""Scenario 2: many modules at 100 req/s each, open loop, real rate limit (100/s per
token, burst 20: the defaults).

For N = 100, 200, 300, 500, 1,000 tokens, each offered 100 req/s of GET /api/v1/devices
(authenticated, rate-limited, answered by the devices actor), over
  http    N modules multiplexed over C keep-alive connections (C = min(N, 100); the
          gateway runs C + 28 threads: civetweb ties each connection to a thread, see
          scenario 3 for N connections at once), and
  native  one ZeroMQ DEALER session per module (docs/sdk-protocol.md).
The first 10 tokens of every run are offered 150 req/s instead: their accepted rate
must be 100 +- 2; any 429 to a token offered 100 req/s is a false 429 (must be 0).
The first 2 s of each run (the burst allowance, connection set-up) are not recorded.
Every run has a fresh core. The target's level, 500 modules, is run REPEATS times (3; once
with --quick) for each transport, since the shared machine moves p99 by several times
between runs minutes apart; its verdict is on the median p99 (every run is in the CSV).
Writes docs/bench/s2_many_modules.csv, s2_latency_vs_load.dat, s2_summary.json."""
import json
import os
import resource
import time

import benchlib as b

FAST = 10
TARGET = 500  # modules: the level of the target


def children_cpu():
    """CPU seconds of the reaped children (mc-load runs as one)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    args = b.parse_args("scenario 2: many modules", lambda p: p.add_argument(
        "--counts", help="module counts, comma-separated (default 100,200,300,500,1000)"))
    counts = ([int(c) for c in args.counts.split(",")] if args.counts else
              [100, 300] if args.quick else [100, 200, 300, 500, 1000])
    duration = 4 if args.quick else 10
    warmup = 2
    conns_max = 100
    rows = []
    series = os.path.join(args.out, "s2_latency_vs_load.dat")
    if os.path.exists(series):
        os.unlink(series)
    repeats = 1 if args.quick else 3
    for transport in ("http", "hello", "native"):
        for n, rep in ((n, k) for n in counts for k in range(1, (repeats if n == TARGET else 1) + 1)):
            # A core of its own for every run: an overloaded run leaves queues behind
            # that would otherwise be charged to the next one. "hello" is the baseline:
            # bench/civetweb_hello (same civetweb, threads and client, no authentication)
            # under the same HTTP load, to tell civetweb's own limit from the core's.
            with b.Core(args, threads=conns_max + 28, name="s2") as core:
                tokens = core.token_file(n)
                b.log(f"== s2 {transport}: {n} modules x 100 req/s ({FAST} of them 150 req/s)"
                      + (f", run {rep}" if n == TARGET and repeats > 1 else ""))
                hello = None
                if transport == "hello":
                    port = b.free_port()
                    hello = b.Proc([b.prog(args, "civetweb_hello"), str(port),
                                    str(conns_max + 28)], "hello")
                    b.wait_port(port)
                    target = ["--url", f"http://127.0.0.1:{port}/api/v1/devices", "--no-auth",
                              "--connections", min(n, conns_max)]
                elif transport == "http":
                    target = ["--url", core.url + "/devices", "--connections", min(n, conns_max)]
                else:
                    target = ["--transport", "native", "--endpoint", core.endpoint]
                server_pid = hello.proc.pid if hello else core.pid
                core_cpu0, client0 = b.cpu_seconds(server_pid), children_cpu()
                wall0 = time.monotonic()
                # The latency-vs-load series takes the first run of a level.
                more = ["--series", series] if rep == 1 else []
                row = b.mc_load(args, *target, "--tokens", tokens, "--modules", n, "--rate", 100,
                                "--fast", f"{FAST}:150", "--duration", duration + warmup,
                                "--warmup", warmup, "--timeout-ms", 2000, *more,
                                "--label", f"{transport}-{n}")[0]
                wall = time.monotonic() - wall0
                # Where the two cores went: modcored vs the client (mc-load).
                row["core_cpu_pct"] = round(100 * (b.cpu_seconds(server_pid) - core_cpu0) / wall)
                row["client_cpu_pct"] = round(100 * (children_cpu() - client0) / wall)
                row["rss_kib"] = b.rss_kib(server_pid)
                row["transport"] = transport
                row["run"] = rep
                if hello:
                    hello.stop()
                rows.append(row)
    b.write_csv(os.path.join(args.out, "s2_many_modules.csv"), rows)
    summary = {"duration_s": duration, "fast_tokens": FAST, "target_modules": TARGET,
               "repeats": repeats, "runs": [], "target": {}}
    for r in rows:
        offered = float(r["offered_rps"])
        normal_ok = float(r["ok_rps"]) - float(r["fast_accepted_rps"]) * FAST
        summary["runs"].append({
            "transport": r["transport"], "modules": int(r["modules"]), "run": r["run"],
            "offered_rps": offered, "ok_rps": float(r["ok_rps"]),
            "normal_ok_rps": normal_ok, "p50_us": int(r["p50_us"]), "p99_us": int(r["p99_us"]),
            "p999_us": int(r["p999_us"]), "max_us": int(r["max_us"]),
            "false_429": int(r["false_429"]), "timeouts": int(r["timeouts"]),
            "errors": int(r["errors"]), "fast_accepted_rps": float(r["fast_accepted_rps"]),
            "fast_min_rps": float(r["fast_min_rps"]), "fast_max_rps": float(r["fast_max_rps"]),
            "answered_conns": int(r["answered_conns"]), "conns": int(r["conns"]),
            "lag_max_us": float(r["lag_max_us"]),
            "core_cpu_pct": r["core_cpu_pct"], "client_cpu_pct": r["client_cpu_pct"],
            "held": int(r["p99_us"]) < 5000 and int(r["timeouts"]) == 0
            and int(r["errors"]) == 0 and (r["transport"] == "hello" or (
                int(r["false_429"]) == 0 and abs(float(r["fast_accepted_rps"]) - 100) <= 2))})
    # The target's verdict: the run with the median p99 of the 500-module level (each
    # run must also be free of false 429s, timeouts and errors).
    for transport in ("http", "hello", "native"):
        runs = sorted((x for x in summary["runs"]
                       if x["transport"] == transport and x["modules"] == TARGET),
                      key=lambda x: x["p99_us"])
        if runs:
            median = runs[len(runs) // 2]
            summary["target"][transport] = {
                "p99_us_runs": [x["p99_us"] for x in runs], "median": median,
                "false_429_max": max(x["false_429"] for x in runs),
                "held": median["held"] and all(
                    x["false_429"] == 0 and x["timeouts"] == 0 and x["errors"] == 0
                    for x in runs)}
    with open(os.path.join(args.out, "s2_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for run in summary["runs"]:
        b.log(f"s2 {run['transport']} {run['modules']} (run {run['run']}): ok {run['ok_rps']:.0f}/s of "
              f"{run['offered_rps']:.0f}, p99 {run['p99_us']} us, false 429 {run['false_429']}, "
              f"fast accepted {run['fast_accepted_rps']:.2f}/s, held={run['held']}, "
              f"cpu core {run['core_cpu_pct']}% client {run['client_cpu_pct']}% of 200%")


if __name__ == "__main__":
    main()
