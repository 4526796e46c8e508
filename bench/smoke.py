#!/usr/bin/env python3
"""ctest bench_smoke: mc-load against a real core for ~2 s at a low rate, over HTTP and
the native transport, checking that its counters add up (never its speed):
sent = 2xx + 401 + 403 + 429 + 5xx + other + timeouts + errors, per token and in
total; a token without device.read gets only 403s, an unknown token only 401s; the
percentiles are ordered. Also: the bench token route answers 404 when it is off."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios"))
import benchlib  # noqa: E402
import csv  # noqa: E402
import tempfile  # noqa: E402

COUNTERS = ("ok_2xx", "s401", "s403", "s429", "s5xx", "other", "timeouts", "errors")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def check_run(label, row, per_token_path, n_good):
    sent = int(row["sent"])
    check(sent > 0, f"{label}: requests were sent ({sent})")
    check(sent == sum(int(row[c]) for c in COUNTERS), f"{label}: total counters add up")
    with open(per_token_path, newline="") as f:
        tokens = list(csv.DictReader(f))
    for t in tokens:
        check(int(t["sent"]) == sum(int(t[c]) for c in COUNTERS),
              f"{label}: token {t['token']} counters add up")
    check(sum(int(t["sent"]) for t in tokens) == sent, f"{label}: per-token sums match the total")
    good, forbidden, unknown = tokens[:n_good], tokens[n_good], tokens[n_good + 1]
    check(all(int(t["ok_2xx"]) == int(t["sent"]) for t in good), f"{label}: valid tokens all 2xx")
    check(int(forbidden["s403"]) == int(forbidden["sent"]) > 0,
          f"{label}: the token without device.read got only 403")
    check(int(unknown["s401"]) == int(unknown["sent"]) > 0,
          f"{label}: the unknown token got only 401")
    p = [int(row[k]) for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
    check(p == sorted(p) and p[0] > 0, f"{label}: percentiles ordered {p}")
    check(int(row["timeouts"]) == 0 and int(row["errors"]) == 0, f"{label}: no timeouts/errors")


def main():
    args = benchlib.parse_args("bench smoke test")
    with benchlib.Core(args, threads=8, name="smoke-off", bench=False) as core:
        status, _ = benchlib.http(core.url + "/bench/tokens", "POST",
                                  {"count": 1, "permissions": []}, core.admin)
        check(status == 404, f"bench route off by default answers 404 (got {status})")
    with benchlib.Core(args, threads=8, name="smoke") as core:
        good = core.tokens(3, ["device.read"])
        status, body = benchlib.http(core.url + "/bench/tokens", "POST",
                                     {"count": 1, "permissions": ["modules.manage"]}, core.admin)
        check(status == 400, f"modules.manage is refused ({status})")
        status, body = benchlib.http(core.url + "/bench/tokens", "POST",
                                     {"count": 1, "permissions": []}, good[0])
        check(status == 403, f"a module token may not ask for bench tokens ({status})")
        # bench-0..2 hold device.read; asking again for 4 with no permission replaces
        # bench-0..3: so issue the forbidden one under a higher index.
        nothing = core.tokens(4, [])[3]
        good = core.tokens(3, ["device.read"])
        unknown = "x" * 64
        tmp = tempfile.mkdtemp(prefix="mc-smoke-")
        tokens = os.path.join(tmp, "tokens.txt")
        with open(tokens, "w") as f:
            f.write("\n".join(good + [nothing, unknown]) + "\n")
        for transport in ("http", "native"):
            per_token = os.path.join(tmp, f"per-token-{transport}.csv")
            target = (["--url", core.url + "/devices"] if transport == "http"
                      else ["--endpoint", core.endpoint, "--path", "/devices"])
            rows = benchlib.mc_load(args, "--transport", transport, *target, "--tokens", tokens,
                                    "--rate", 20, "--duration", 2, "--timeout-ms", 2000,
                                    "--per-token", per_token, "--label", f"smoke-{transport}")
            check(len(rows) == 1, f"{transport}: one CSV row")
            if rows:
                check_run(transport, rows[0], per_token, len(good))
    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
