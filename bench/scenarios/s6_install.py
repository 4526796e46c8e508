#!/usr/bin/env python3
"""Scenario 6: install time, ZIP upload to RUNNING, for a ~1 MB module.

The module is bench/mc-sink (starts in about a millisecond) plus 1 MiB of
incompressible data, so the ZIP is ~1.04 MB: POST /api/v1/modules/install (raw
application/zip) answers 201 once the module is RUNNING (upload, safe extraction,
manifest, name/port reserved, token + webhook secret sealed, sandbox test run = start
and /health, launch, /health again, record committed). The module's own start-up
(exec to first /health 200, measured standalone with the same binary) happens twice
in that path (test run and launch), so
    core overhead = install time - 2 x module start-up.
R installs (distinct names and ports), each followed by an uninstall. Writes
docs/bench/s6_install.csv and s6_summary.json."""
import json
import os
import statistics
import subprocess
import tempfile
import time

import benchlib as b


def startup_ms(args, port):
    """exec -> first GET /health 200, polled every 0.5 ms."""
    t0 = time.perf_counter()
    p = subprocess.Popen([b.prog(args, "mc-sink"), str(port)], stdout=subprocess.DEVNULL)
    try:
        while True:
            try:
                status, _ = b.http(f"http://127.0.0.1:{port}/health", timeout=1)
                if status == 200:
                    return (time.perf_counter() - t0) * 1000
            except OSError:
                time.sleep(0.0005)
    finally:
        p.terminate()
        p.wait()


def main():
    args = b.parse_args("scenario 6: install")
    runs = 3 if args.quick else 10
    tmp = tempfile.mkdtemp(prefix="mc-bench-install-")
    with open(b.prog(args, "mc-sink"), "rb") as f:
        binary = f.read()
    pad = os.urandom(1 << 20)
    rows = []
    with b.Core(args, name="s6") as core:
        for i in range(runs):
            name, port = f"big-{i:02d}", 8100 + i
            files = {"manifest.json": b.manifest(name, "AUTOMATION", port=port,
                                                 entry=["./mc-sink"]),
                     "mc-sink": binary, "pad.bin": pad}
            path = b.make_zip(os.path.join(tmp, name + ".zip"), files, {"mc-sink": 0o755})
            size = os.path.getsize(path)
            t0 = time.perf_counter()
            status, body = core.install(path)
            install_ms = (time.perf_counter() - t0) * 1000
            if status != 201:
                raise SystemExit(f"install failed: {status} {body}")
            t0 = time.perf_counter()
            status, _ = b.http(f"{core.url}/modules/{name}", "DELETE", token=core.admin)
            uninstall_ms = (time.perf_counter() - t0) * 1000
            start_ms = startup_ms(args, 8150)
            rows.append({"run": i, "zip_bytes": size, "install_ms": round(install_ms, 2),
                         "module_startup_ms": round(start_ms, 3),
                         "core_overhead_ms": round(install_ms - 2 * start_ms, 2),
                         "uninstall_ms": round(uninstall_ms, 2), "uninstall_status": status})
            b.log(f"s6 run {i}: {size} B ZIP installed in {install_ms:.1f} ms "
                  f"(module start-up {start_ms:.2f} ms), uninstalled in {uninstall_ms:.1f} ms")
    b.write_csv(os.path.join(args.out, "s6_install.csv"), rows)
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    summary = {"runs": runs, "zip_bytes": rows[0]["zip_bytes"], "install_ms_median": med("install_ms"),
               "install_ms_min": min(r["install_ms"] for r in rows),
               "install_ms_max": max(r["install_ms"] for r in rows),
               "module_startup_ms_median": med("module_startup_ms"),
               "core_overhead_ms_median": med("core_overhead_ms"),
               "uninstall_ms_median": med("uninstall_ms")}
    with open(os.path.join(args.out, "s6_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    b.log(f"s6: median install {summary['install_ms_median']:.1f} ms, module start-up "
          f"{summary['module_startup_ms_median']:.2f} ms, core overhead "
          f"{summary['core_overhead_ms_median']:.1f} ms")


if __name__ == "__main__":
    main()
