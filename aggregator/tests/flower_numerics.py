"""Flower's own aggregation on arrays written by tests/flower_numerics.rs.

Reads DIR/meta.json and DIR/data.bin (little-endian f32: the global model,
then every update, each tensor after tensor in the listed shapes); writes
DIR/<name>.bin (the result, same layout) for each rule below.
"""

import json
import sys

import numpy as np
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAdagrad, FedAdam, FedYogi
from flwr.server.strategy.aggregate import (
    aggregate,
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)


def split(flat, shapes):
    out, at = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(flat[at : at + n].reshape(s).copy())
        at += n
    return out


def write(directory, name, arrays):
    np.concatenate([a.astype(np.float32).ravel() for a in arrays]).astype("<f4").tofile(
        f"{directory}/{name}.bin"
    )


def main():
    directory = sys.argv[1]
    with open(f"{directory}/meta.json") as f:
        meta = json.load(f)
    shapes, weights, opt = meta["shapes"], meta["weights"], meta["fedopt"]
    size = sum(int(np.prod(s)) for s in shapes)
    data = np.fromfile(f"{directory}/data.bin", dtype="<f4")
    global_model = split(data[:size], shapes)
    results = [
        (split(data[size * (k + 1) : size * (k + 2)], shapes), w) for k, w in enumerate(weights)
    ]

    write(directory, "fedavg", aggregate(results))
    write(directory, "median", aggregate_median(results))
    write(directory, "trimmed", aggregate_trimmed_avg(results, meta["trim_beta"]))
    write(directory, "krum", aggregate_krum(results, meta["byzantine"], 0))
    write(directory, "multikrum", aggregate_krum(results, meta["byzantine"], meta["multi"]))

    fit = [
        (
            None,
            FitRes(
                status=Status(code=Code.OK, message=""),
                parameters=ndarrays_to_parameters(arrays),
                num_examples=w,
                metrics={},
            ),
        )
        for arrays, w in results
    ]
    for name, cls in (("fedadagrad", FedAdagrad), ("fedadam", FedAdam), ("fedyogi", FedYogi)):
        # FedAdagrad has no moments' decay (fedsky ignores its betas).
        betas = {} if cls is FedAdagrad else {"beta_1": opt["beta_1"], "beta_2": opt["beta_2"]}
        strategy = cls(
            initial_parameters=ndarrays_to_parameters(global_model),
            eta=opt["eta"],
            eta_l=opt["eta_l"],
            tau=opt["tau"],
            **betas,
        )
        # Two rounds with the same updates: the second uses the moments of the first.
        for rnd in (1, 2):
            params, _ = strategy.aggregate_fit(rnd, fit, [])
        write(directory, name, parameters_to_ndarrays(params))


if __name__ == "__main__":
    main()
