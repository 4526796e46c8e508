#!/usr/bin/env python3
"""Scenario 4: the native transport against a raw ZeroMQ request/reply baseline.

  native   REQUEST GET /devices over the core's ipc:// ROUTER (HELLO first): session
           lookup, token re-check, hand-off to an SDK worker, the same dispatch as HTTP
           (authentication, rate limit raised to 10^6/s, permission, devices actor),
           RESPONSE
  zmq      bench/zmq_echo: a ROUTER on ipc:// that sends every frame straight back
Same client (mc-load --transport native), closed loop, K sockets with one request in
flight each (request/reply), several K, interleaved; then the same with 4 in flight per
socket. Writes docs/bench/s4_native_vs_zmq.csv and s4_summary.json."""
import json
import os
import tempfile

import benchlib as b


def main():
    args = b.parse_args("scenario 4: native vs raw ZeroMQ")
    duration = 3 if args.quick else 6
    shapes = [(16, 1)] if args.quick else [(1, 1), (16, 1), (64, 1), (16, 4)]
    rows = []
    tmp = tempfile.mkdtemp(prefix="mc-bench-zmq-")
    echo_ep = f"ipc://{tmp}/echo.sock"
    core = b.Core(args, rate=1000000, burst=1000000, name="s4")
    echo = b.Proc([b.prog(args, "zmq_echo"), echo_ep], "zmq_echo")
    try:
        core.start()
        tokens = core.token_file(64)
        targets = {"native": ["--endpoint", core.endpoint, "--tokens", tokens],
                   "zmq": ["--endpoint", echo_ep, "--no-auth"]}
        for name, target in targets.items():
            b.mc_load(args, "--transport", "native", *target, "--closed", 8, "--duration", 1,
                      "--label", "warmup", "--quiet")
        for k, depth in shapes:
            for name, target in targets.items():
                b.log(f"== s4 {name}: {k} sockets x {depth} in flight")
                row = b.mc_load(args, "--transport", "native", *target, "--closed", k,
                                "--depth", depth, "--duration", duration, "--requests", 3000000,
                                "--label", f"{name}-K{k}-D{depth}")[0]
                row["target"], row["k"], row["depth"] = name, k, depth
                rows.append(row)
    finally:
        core.stop()
        echo.stop()
    b.write_csv(os.path.join(args.out, "s4_native_vs_zmq.csv"), rows,
                ["target", "k", "depth"] + [c for c in rows[0] if c not in ("target", "k", "depth")])
    summary = {"duration_s": duration, "shapes": []}
    for k, depth in shapes:
        native = next(r for r in rows if r["target"] == "native" and r["k"] == k and r["depth"] == depth)
        zmq = next(r for r in rows if r["target"] == "zmq" and r["k"] == k and r["depth"] == depth)
        summary["shapes"].append({
            "k": k, "depth": depth, "native_rps": float(native["ok_rps"]),
            "zmq_rps": float(zmq["ok_rps"]), "ratio": float(native["ok_rps"]) / float(zmq["ok_rps"]),
            "native_p50_us": int(native["p50_us"]), "native_p99_us": int(native["p99_us"]),
            "zmq_p50_us": int(zmq["p50_us"]), "zmq_p99_us": int(zmq["p99_us"])})
    best_native = max(s["native_rps"] for s in summary["shapes"])
    best_zmq = max(s["zmq_rps"] for s in summary["shapes"])
    summary["best_native_rps"], summary["best_zmq_rps"] = best_native, best_zmq
    summary["ratio_best"] = best_native / best_zmq
    rr = [s for s in summary["shapes"] if s["depth"] == 1]
    summary["ratio_reqrep_best"] = max(s["native_rps"] for s in rr) / max(s["zmq_rps"] for s in rr)
    with open(os.path.join(args.out, "s4_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for s in summary["shapes"]:
        b.log(f"s4 K={s['k']} D={s['depth']}: native {s['native_rps']:.0f}/s, zmq "
              f"{s['zmq_rps']:.0f}/s, ratio {s['ratio']:.2f}")


if __name__ == "__main__":
    main()
