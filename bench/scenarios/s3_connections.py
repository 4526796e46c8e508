#!/usr/bin/env python3
"""Scenario 3: 1,000 modules holding keep-alive connections at once.

Each module has its own connection (its own token) and sends GET /api/v1/devices at
5 req/s (5,000 req/s in all: well under the gateway's ceiling, so only the handling of
connections is tested), open loop, 2 s timeout. Gateway configurations tried, each in
its own core:
  t64-ka5000     the defaults (64 threads, keep-alive 5 s)
  t1024-ka5000   a thread per connection
  t64-ka50       short keep-alive: an idle connection (200 ms between requests) is
                 closed after 50 ms, freeing its thread for the next connection
  t128-ka50      the same with twice the threads
  native         the native transport: 1,000 DEALER sessions (reference)
Reports answered connections (connections that got at least one response), throughput,
p99, timeouts. Writes docs/bench/s3_connections.csv and s3_summary.json."""
import json
import os

import benchlib as b

MODULES = 1000
RATE = 5


def main():
    args = b.parse_args("scenario 3: connections")
    duration = 5 if args.quick else 10
    configs = [("t64-ka5000", 64, 5000), ("t1024-ka5000", 1024, 5000), ("t64-ka50", 64, 50),
               ("t128-ka50", 128, 50), ("native", 64, 5000)]
    if args.quick:
        configs = [configs[0], configs[2], configs[4]]
    rows = []
    for label, threads, keep_alive in configs:
        b.log(f"== s3 {label}: {MODULES} modules, one connection each, {RATE} req/s each")
        with b.Core(args, threads=threads, keep_alive_ms=keep_alive, name="s3") as core:
            tokens = core.token_file(MODULES)
            target = (["--transport", "native", "--endpoint", core.endpoint] if label == "native"
                      else ["--url", core.url + "/devices", "--connections", MODULES])
            row = b.mc_load(args, *target, "--tokens", tokens, "--modules", MODULES,
                            "--rate", RATE, "--duration", duration + 2, "--warmup", 2,
                            "--timeout-ms", 2000, "--label", f"s3-{label}")[0]
            row["config"], row["threads"], row["keep_alive_ms"] = label, threads, keep_alive
            row["rss_kib"] = b.rss_kib(core.pid)
            rows.append(row)
    b.write_csv(os.path.join(args.out, "s3_connections.csv"), rows,
                ["config", "threads", "keep_alive_ms"] +
                [k for k in rows[0] if k not in ("config", "threads", "keep_alive_ms")])
    summary = {"modules": MODULES, "rate": RATE, "duration_s": duration, "runs": [
        {"config": r["config"], "threads": r["threads"], "keep_alive_ms": r["keep_alive_ms"],
         "answered_conns": int(r["answered_conns"]), "conns": int(r["conns"]),
         "ok_rps": float(r["ok_rps"]), "offered_rps": float(r["offered_rps"]),
         "p50_us": int(r["p50_us"]), "p99_us": int(r["p99_us"]), "max_us": int(r["max_us"]),
         "timeouts": int(r["timeouts"]), "errors": int(r["errors"]),
         "s429": int(r["s429"]), "rss_kib": r["rss_kib"]} for r in rows]}
    with open(os.path.join(args.out, "s3_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for run in summary["runs"]:
        b.log(f"s3 {run['config']}: answered {run['answered_conns']}/{run['conns']}, "
              f"ok {run['ok_rps']:.0f}/s, p99 {run['p99_us']} us, timeouts {run['timeouts']}")


if __name__ == "__main__":
    main()
