#!/usr/bin/env python3
"""Profile of the main path: where the core's CPU goes while it serves the scenario-1
call (GET /api/v1/devices, closed loop, 16 connections) and the scenario-4 call (the
same over the native transport, 16 sockets).

With `perf record -e cpu-clock -g` on modcored when perf works (this VM has no hardware
counters: `perf stat -e instructions` says <not supported>, the cpu-clock software event
works); else `valgrind --tool=callgrind` on a short, slow run. Writes
docs/bench/profile_<path>_{threads,dso,symbols}.txt and profile_summary.json."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import benchlib as b


def perf_works():
    perf = shutil.which("perf")
    if not perf:
        return False
    r = subprocess.run([perf, "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                       capture_output=True)
    return r.returncode == 0


def switches(pid):
    """Context switches of every thread of pid, voluntary + involuntary."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def report(data, sort, path, extra=()):
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                        "--percent-limit", "0.5", "-g", "none", *extra], capture_output=True,
                       text=True)
    lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
    with open(path, "w") as f:
        f.write("\n".join(lines[:80]) + "\n")
    return lines


def top(lines, n):
    out = []
    for line in lines:
        parts = line.split()
        if parts and parts[0].endswith("%"):
            out.append({"pct": float(parts[0].rstrip("%")), "what": " ".join(parts[1:])})
        if len(out) >= n:
            break
    return out


def main():
    args = b.parse_args("profile of the main path")
    duration = 3 if args.quick else 6
    summary = {}
    tmp = tempfile.mkdtemp(prefix="mc-bench-prof-")
    if perf_works():
        summary["tool"] = "perf record -e cpu-clock -g (software clock, 4 kHz)"
        for path in ("http", "native"):
            with b.Core(args, rate=1000000, burst=1000000, name="prof") as core:
                tokens = core.token_file(16)
                target = (["--url", core.url + "/devices"] if path == "http" else
                          ["--transport", "native", "--endpoint", core.endpoint])
                b.mc_load(args, *target, "--tokens", tokens, "--closed", 16, "--duration", 1,
                          "--quiet")
                data = os.path.join(tmp, f"{path}.data")
                perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-g",
                                         "-p", str(core.pid), "-o", data],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                cpu0, sw0 = b.cpu_seconds(core.pid), switches(core.pid)
                row = b.mc_load(args, *target, "--tokens", tokens, "--closed", 16,
                                "--duration", duration, "--label", f"profile-{path}")[0]
                cpu = b.cpu_seconds(core.pid) - cpu0
                sw = switches(core.pid) - sw0
                perf.send_signal(2)
                perf.wait(timeout=60)
                threads = report(data, "comm", os.path.join(args.out, f"profile_{path}_threads.txt"))
                dsos = report(data, "dso", os.path.join(args.out, f"profile_{path}_dso.txt"))
                syms = report(data, "sym", os.path.join(args.out, f"profile_{path}_symbols.txt"),
                              )
                reqs = float(row["ok_rps"]) * float(row["duration_s"])
                summary[path] = {"ok_rps": float(row["ok_rps"]), "core_cpu_s": round(cpu, 2),
                                 "core_cpu_us_per_request": round(cpu / reqs * 1e6, 1) if reqs else 0,
                                 "switches_per_request": round(sw / reqs, 2) if reqs else 0,
                                 "threads": top(threads, 8), "dso": top(dsos, 10),
                                 "symbols": top(syms, 25)}
    else:
        summary["tool"] = "valgrind --tool=callgrind (perf unavailable)"
        with b.Core(args, rate=1000000, burst=1000000, name="prof") as core:
            tokens = core.token_file(4)
        # callgrind: a core of its own under valgrind, a short low-rate run.
        core = b.Core(args, rate=1000000, burst=1000000, name="prof-cg")
        out = os.path.join(tmp, "callgrind.out")
        orig = os.path.join(args.build, "modcored")
        core.args = type("A", (), {"build": tmp})()
        os.symlink(orig.replace("modcored", "modcore-launch"), os.path.join(tmp, "modcore-launch"))
        with open(os.path.join(tmp, "modcored"), "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={out} "
                    f"{orig} \"$@\"\n")
        os.chmod(os.path.join(tmp, "modcored"), 0o755)
        core.start(timeout=120)
        tokens = core.token_file(4)
        b.mc_load(args, "--url", core.url + "/devices", "--tokens", tokens, "--closed", 4,
                  "--duration", 5, "--requests", 5000, "--label", "profile-callgrind")
        core.stop()
        r = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True)
        with open(os.path.join(args.out, "profile_http_callgrind.txt"), "w") as f:
            f.write("\n".join(r.stdout.splitlines()[:120]) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(args.out, "profile_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    b.log(json.dumps(summary, indent=1)[:3000])


if __name__ == "__main__":
    main()
