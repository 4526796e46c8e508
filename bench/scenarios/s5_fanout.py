#!/usr/bin/env python3
"""Scenario 5: event fan-out, one publisher, 10 and 100 subscribers.

Subscribers are real installed modules (the real install path: ZIP, sandbox test,
launch, /health), each running bench/mc-sink on its own port (8100..8199): a cheap
epoll receiver that answers 200 to POST /webhook/events without verifying, and that
subscribes itself at start. Sinks 0-9 subscribe to "fan10.*" and "fan100.*", sinks
10-99 to "fan100.*" only, so one event type reaches 10 subscribers and the other 100.

  core     the admin token publishes E events (POST /api/v1/events/publish, mc-load
           closed loop, 8 connections; the rate limit is raised to 10^6/s for the
           publisher); the core signs (two HMAC schemes), writes every delivery to the
           durable outbox (group commit); its delivery threads POST them with libcurl
           multi, one in flight per subscription (publish order per subscription)
  curl     bench/curl_fanout POSTs the same number of deliveries to the same sinks with
           libcurl multi, one in flight per target too: no signing, no outbox (the target's
           baseline)
  curl+headers  the same, each POST carrying the eight header lines a core delivery must
           (curl_fanout --contract-headers; no signing): what the contract costs curl
  threads  bench/wh_threads: the core's delivery threads alone (actors/webhook_http.c,
           2 threads as the core's default), handed signed deliveries as the actor
           hands them, with no outbox, records or publisher: where between libcurl and
           the whole core the cost lies
Deliveries per second are taken from the sinks' own counters (first to last delivery).

The three targets take turns, ROUNDS times (3; 1 with --quick), in the same core: the
shared machine moves by tens of per cent within minutes (the libcurl baseline alone
between 18k and 53k deliveries/s in one evening), so each round's ratio pairs a core
figure with the baseline measured right after it, and the summary's ratio is the median
of the rounds' (every round is in the CSV). Later rounds find the core's outbox with the
records of the earlier ones: what sustained publishing looks like.
Where the CPU went, per delivery, is measured around each target: the core process (or
curl_fanout), the sinks (every mc-sink process), and context switches of the whole
machine (/proc/stat), so a ratio can be read against what each side spent.
Writes docs/bench/s5_fanout.csv and s5_summary.json."""
import concurrent.futures
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time

import benchlib as b

BASE_PORT = 8100


def sink_zip(args, tmp, i, patterns):
    with open(b.prog(args, "mc-sink"), "rb") as f:
        binary = f.read()
    name = f"sink-{i:03d}"
    files = {"manifest.json": b.manifest(name, "AUTOMATION", port=BASE_PORT + i,
                                         entry=["./mc-sink"], permissions=["events.subscribe"]),
             "mc-sink": binary, "patterns.txt": patterns.encode()}
    return b.make_zip(os.path.join(tmp, name + ".zip"), files, {"mc-sink": 0o755})


def counts(ports):
    out = []
    for p in ports:
        status, body = b.http(f"http://127.0.0.1:{p}/count", timeout=5)
        out.append(body)
    return out


def reset(ports):
    for p in ports:
        b.http(f"http://127.0.0.1:{p}/reset", "POST", {}, timeout=5)


def wait_deliveries(ports, expected, timeout):
    deadline = time.time() + timeout
    while True:
        c = counts(ports)
        got = sum(x["events"] for x in c)
        if got >= expected or time.time() > deadline:
            break
        time.sleep(0.2)
    first = min((x["first_ns"] for x in c if x["events"]), default=0)
    last = max((x["last_ns"] for x in c if x["events"]), default=0)
    secs = (last - first) / 1e9 if last > first else 0.0
    return got, secs


def sinks_cpu():
    """CPU seconds of every mc-sink process on the machine (only this run's sinks run)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "mc-sink":
                        total += b.cpu_seconds(int(pid))
            except OSError:
                pass
    return total


def context_switches():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])
    return 0


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cost(got, cpu, sinks, switches):
    """Per delivery: CPU µs of the sender and of the sinks, context switches."""
    return {"sender_cpu_us": round(cpu / got * 1e6, 1) if got else 0,
            "sinks_cpu_us": round(sinks / got * 1e6, 1) if got else 0,
            "ctx_switches": round(switches / got, 2) if got else 0}


def one_round(args, core, admin, ports, targets, n, e, rnd):
    """The core, then curl_fanout without and with the contract's headers, to the same
    sinks: one row each."""
    rows = []
    expected = e * n
    b.log(f"== s5 round {rnd} core: {e} events x {n} subscribers")
    body = json.dumps({"type": f"fan{n}.tick", "payload": {"pad": "x" * 150}})
    t0 = time.time()
    cpu0, sinks0, ctx0 = b.cpu_seconds(core.pid), sinks_cpu(), context_switches()
    pub = b.mc_load(args, "--url", core.url + "/events/publish", "--tokens", admin,
                    "--method", "POST", "--body", body, "--closed", 8,
                    "--requests", e, "--duration", 60, "--timeout-ms", 10000,
                    "--label", f"publish-{n}")[0]
    got, secs = wait_deliveries(ports, expected, 90)
    spent = cost(got, b.cpu_seconds(core.pid) - cpu0, sinks_cpu() - sinks0,
                 context_switches() - ctx0)
    wall = time.time() - t0
    rate = got / secs if secs else 0
    b.log(f"   {got}/{expected} deliveries in {secs:.2f} s: {rate:.0f}/s "
          f"(publish {float(pub['ok_rps']):.0f} events/s, p99 {pub['p99_us']} us); "
          f"per delivery: {spent}")
    rows.append({"round": rnd, "target": "core", "subscribers": n, "events": e,
                 "expected": expected, "delivered": got, "seconds": round(secs, 3),
                 "deliveries_per_s": round(rate, 1), "wall_s": round(wall, 2),
                 "publish_rps": pub["ok_rps"], "publish_p50_us": pub["p50_us"],
                 "publish_p99_us": pub["p99_us"], "publish_errors":
                 int(pub["timeouts"]) + int(pub["errors"]) + int(pub["s5xx"]), **spent})
    reset(ports)
    baselines = (("curl", ["curl_fanout", "--inflight", "1"]),
                 ("curl+headers", ["curl_fanout", "--inflight", "1", "--contract-headers"]),
                 ("threads", ["wh_threads", "--threads", "2"]))
    for target, (program, *extra) in baselines:
        b.log(f"== s5 round {rnd} {target}: {e} POSTs x {n} targets")
        t0 = time.time()
        cpu0, sinks0, ctx0 = children_cpu(), sinks_cpu(), context_switches()
        r = subprocess.run([b.prog(args, program), "--count", str(e),
                            "--body-bytes", str(len(body) + 120)] + extra +
                           [f"http://127.0.0.1:{p}/webhook/events" for p in targets],
                           capture_output=True, text=True, timeout=150)
        b.log("   " + r.stdout.strip())
        got, secs = wait_deliveries(ports, expected, 30)
        spent = cost(got, children_cpu() - cpu0, sinks_cpu() - sinks0, context_switches() - ctx0)
        rate = got / secs if secs else 0
        b.log(f"   {got}/{expected} deliveries in {secs:.2f} s: {rate:.0f}/s; per delivery: "
              f"{spent}")
        rows.append({"round": rnd, "target": target, "subscribers": n, "events": e,
                     "expected": expected, "delivered": got, "seconds": round(secs, 3),
                     "deliveries_per_s": round(rate, 1),
                     "wall_s": round(time.time() - t0, 2), **spent})
        reset(ports)
    return rows


def main():
    args = b.parse_args("scenario 5: event fan-out")
    subscribers = [10] if args.quick else [10, 100]
    rounds = 1 if args.quick else 3
    total = max(subscribers)
    events = {10: 1000 if args.quick else 5000, 100: 1000}
    rows = []
    tmp = tempfile.mkdtemp(prefix="mc-bench-fan-")
    with b.Core(args, rate=1000000, burst=1000000, name="s5",
                extra="[webhook]\ntimeout_ms = 5000\n") as core:
        zips = [sink_zip(args, tmp, i, "fan10.*,fan100.*" if i < 10 else "fan100.*")
                for i in range(total)]
        b.log(f"== s5: installing {total} sink modules")
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(core.install, zips))
        bad = [r for r in results if r[0] != 201]
        if bad:
            raise SystemExit(f"install failed: {bad[:3]}")
        b.log(f"   installed in {time.time() - t0:.1f} s")
        deadline = time.time() + 60
        while time.time() < deadline:
            status, body = b.http(core.url + "/events/subscriptions", token=core.admin)
            if len(body.get("subscriptions", [])) >= total:
                break
            time.sleep(0.2)
        ports = [BASE_PORT + i for i in range(total)]
        admin = core.admin_file()
        for n in subscribers:
            targets = ports[:n]
            e = events[n]
            # warm-up: a few events, connections opened
            b.mc_load(args, "--url", core.url + "/events/publish", "--tokens", admin,
                      "--method", "POST", "--body", json.dumps({"type": f"fan{n}.warm"}),
                      "--closed", 1, "--requests", 20, "--duration", 10, "--quiet")
            wait_deliveries(ports, 20 * n, 30)
            reset(ports)
            for rnd in range(1, rounds + 1):
                rows += one_round(args, core, admin, ports, targets, n, e, rnd)
        rss = b.rss_kib(core.pid)
    b.write_csv(os.path.join(args.out, "s5_fanout.csv"), rows)
    summary = {"rss_kib": rss, "rounds": rounds, "runs": rows, "ratios": {},
               "ratios_same_headers": {}, "ratios_threads": {}, "ratios_by_round": {},
               "ratios_same_headers_by_round": {}, "ratios_threads_by_round": {}}
    for n in subscribers:
        for target, key in (("curl", "ratios"), ("curl+headers", "ratios_same_headers"),
                            ("threads", "ratios_threads")):
            each = []
            for rnd in range(1, rounds + 1):
                c = next(r for r in rows if r["target"] == "core" and r["subscribers"] == n
                         and r["round"] == rnd)
                u = next(r for r in rows if r["target"] == target and r["subscribers"] == n
                         and r["round"] == rnd)
                each.append(c["deliveries_per_s"] / u["deliveries_per_s"]
                            if u["deliveries_per_s"] else 0)
            summary[key + "_by_round"][str(n)] = each
            summary[key][str(n)] = statistics.median(each)
    with open(os.path.join(args.out, "s5_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    b.log(f"s5 median ratios core/curl: {summary['ratios']} (rounds "
          f"{summary['ratios_by_round']}); core/curl with the same headers: "
          f"{summary['ratios_same_headers']}; core/delivery threads alone: "
          f"{summary['ratios_threads']}")


if __name__ == "__main__":
    main()
