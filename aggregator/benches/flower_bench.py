"""Flower's FedAvg aggregation on the same data as benches/vs_flower.rs.

Usage: flower_bench.py MODE UPDATES PARAMS
  MODE = helper   -> flwr.server.strategy.aggregate.aggregate(results)
  MODE = strategy -> flwr.server.strategy.FedAvg(inplace=True).aggregate_fit(...)
Prints one JSON line: cold and warm seconds, peak RSS growth in bytes.
Each case runs in a fresh process so "cold" is a first touch of memory.
"""

import json
import sys
import time

import numpy as np


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def file_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return 0


def hwm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def update(params, seed):
    # Same values as the Rust side: ((i * 2654435761 + seed) mod 2^32 >> 8) * 1e-7.
    i = np.arange(params, dtype=np.uint32)
    v = ((i * np.uint32(2654435761) + np.uint32(seed)) >> np.uint32(8)).astype(np.float32)
    v *= np.float32(1e-7)
    return [v[: params - 1024].copy(), v[params - 1024 :].copy()]


def main():
    mode, n, params = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.server.strategy import FedAvg
    from flwr.server.strategy.aggregate import aggregate

    updates = [(update(params, k + 1), 100 + k) for k in range(n)]
    if mode == "strategy":
        results = [
            (
                None,
                FitRes(
                    status=Status(code=Code.OK, message=""),
                    parameters=ndarrays_to_parameters(arrs),
                    num_examples=ex,
                    metrics={},
                ),
            )
            for arrs, ex in updates
        ]
        del updates
        strategy = FedAvg(inplace=True)

        def run():
            return strategy.aggregate_fit(1, results, [])

    else:

        def run():
            return aggregate(updates)

    # Reset the peak-RSS mark so only the aggregation itself is measured.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = rss_bytes()
    base_file = file_rss_bytes()
    times = []
    # One cold run, then four warm ones (the best is reported), as the Rust side.
    for _ in range(5):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
        del out
    # Less file-backed pages (library code first run here), as the Rust side.
    peak = hwm_bytes() - max(0, file_rss_bytes() - base_file)
    print(json.dumps({"cold": times[0], "warm": min(times[1:]), "peak_growth": max(0, peak - base)}))


if __name__ == "__main__":
    main()
