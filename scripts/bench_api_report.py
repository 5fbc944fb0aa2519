#!/usr/bin/env python3
"""Helpers of scripts/bench-api.sh: parse one wrk --latency output, report medians."""
import re
import statistics
import sys


def parse(label):
    text = sys.stdin.read()
    scale = {"us": 1, "ms": 1000, "s": 1e6}
    found = re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)$", text, re.M)
    p = {q: float(v) * scale[u] for q, v, u in found}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    print(label, round(p["50"]), round(p["99"]), round(rps))


def report(connections, duration):
    by = {}
    for line in sys.stdin:
        if line.strip():
            label, p50, p99, rps = line.split()
            by.setdefault(label, []).append((float(p50), float(p99), float(rps)))
    runs = len(by.get("off", []))
    print(f"GET /health, {connections} connections, {duration} s per run, medians of {runs} runs")
    print(f"{'instrumentation':<16} {'p50 us':>8} {'p99 us':>8} {'req/s':>9}")
    med = {}
    for label in ("off", "on"):
        rows = by.get(label, [])
        if not rows:
            continue
        med[label] = [statistics.median(r[i] for r in rows) for i in range(3)]
        m = med[label]
        print(f"{label:<16} {m[0]:>8.0f} {m[1]:>8.0f} {m[2]:>9.0f}   p99 per run: {[int(r[1]) for r in rows]}")
    if "on" in med and "off" in med:
        added = med["on"][1] - med["off"][1]
        print(f"p99 added: {added:.0f} us ({100 * added / med['off'][1]:+.1f}%); "
              f"throughput {100 * (med['on'][2] / med['off'][2] - 1):+.1f}%")


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(sys.argv[2])
    else:
        report(sys.argv[2], sys.argv[3])
