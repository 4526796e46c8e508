#!/usr/bin/env python3
"""Scenario 7: the core's own memory with 0, 100 and 1,000 installed idle modules.

The modules are SYSTEM modules without a port whose entry is ["sleep", "86400"] and
whose install test is ["true"]: installed through the real path (ZIP upload, extraction,
manifest, token, sealed credentials, test run, launch), cheap to keep running. Modules
are processes of their own: what is measured is modcored's VmRSS from
/proc/<pid>/status (and VmHWM, the peak), after the installs settled for 3 s.
Target: RSS <= 64 MiB + 64 KiB per installed idle module. Writes
docs/bench/s7_memory.csv and s7_summary.json."""
import concurrent.futures
import json
import os
import tempfile
import time

import benchlib as b


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    args = b.parse_args("scenario 7: memory")
    levels = [0, 100] if args.quick else [0, 100, 1000]
    tmp = tempfile.mkdtemp(prefix="mc-bench-mem-")
    rows = []
    with b.Core(args, name="s7", rate=1000000, burst=1000000) as core:
        installed = 0
        t_start = time.time()
        for level in levels:
            zips = []
            for i in range(installed, level):
                name = f"idle-{i:04d}"
                zips.append(b.make_zip(os.path.join(tmp, name + ".zip"), {
                    "manifest.json": b.manifest(name, "SYSTEM", entry=["sleep", "86400"],
                                                test=["true"])}))
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                results = list(pool.map(core.install, zips))
            bad = [r for r in results if r[0] != 201]
            if bad:
                raise SystemExit(f"{len(bad)} installs failed, e.g. {bad[0]}")
            secs = time.time() - t0
            installed = level
            time.sleep(3)
            status, body = b.http(core.url + "/modules", token=core.admin)
            running = sum(1 for m in body.get("modules", []) if m.get("status") == "RUNNING") \
                if isinstance(body, dict) else -1
            rss = status_kib(core.pid, "VmRSS")
            row = {"modules": level, "running": running, "rss_kib": rss,
                   "hwm_kib": status_kib(core.pid, "VmHWM"),
                   "threads": len(os.listdir(f"/proc/{core.pid}/task")),
                   "fds": len(os.listdir(f"/proc/{core.pid}/fd")),
                   "target_kib": 64 * 1024 + 64 * level,
                   "install_s": round(secs, 2)}
            row["within_target"] = rss <= row["target_kib"]
            rows.append(row)
            b.log(f"s7 {level} modules ({running} RUNNING): core RSS {rss / 1024:.1f} MiB "
                  f"(peak {row['hwm_kib'] / 1024:.1f}), target {row['target_kib'] / 1024:.1f} MiB; "
                  f"installed in {secs:.1f} s")
        total_s = time.time() - t_start
    b.write_csv(os.path.join(args.out, "s7_memory.csv"), rows)
    per_module = ((rows[-1]["rss_kib"] - rows[0]["rss_kib"]) / levels[-1]) if levels[-1] else 0
    summary = {"levels": rows, "per_module_kib": per_module, "total_s": round(total_s, 1)}
    with open(os.path.join(args.out, "s7_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    b.log(f"s7: {per_module:.1f} KiB per idle module")


if __name__ == "__main__":
    main()
