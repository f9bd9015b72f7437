#!/usr/bin/env python3
"""pymoo's NSGA-II on the standard test problems, for `placement-bench pymoo`.

Reads one JSON job from stdin:

    {"problems": ["zdt1", ...], "population": 100, "generations": 250,
     "seeds": [1, 2, 3]}

and prints one JSON object to stdout: for each problem and seed the final
non-dominated feasible objective vectors (`res.F`) and the wall time and the
CPU time of this thread spent in `minimize` alone (imports and problem
construction excluded).

The settings mirror fedsky's defaults: SBX (eta 15, probability 0.9, per-variable
probability 0.5), polynomial mutation (eta 20, per-variable probability 1/n),
binary tournament, duplicate elimination. `generations` counts the generations
after the initial population, as fedsky does; pymoo's `n_gen` counts the
initial population as generation 1, hence `n_gen = generations + 1`.
"""

import json
import sys
import time

from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.optimize import minimize
from pymoo.problems import get_problem


def make_problem(name):
    if name == "dtlz2":
        return get_problem("dtlz2", n_var=10, n_obj=3)
    return get_problem(name)


def main():
    job = json.load(sys.stdin)
    results = []
    for name in job["problems"]:
        problem = make_problem(name)
        for seed in job["seeds"]:
            algorithm = NSGA2(
                pop_size=job["population"],
                crossover=SBX(eta=15, prob=0.9, prob_var=0.5),
                mutation=PM(eta=20),
                eliminate_duplicates=True,
            )
            start = time.perf_counter()
            cpu_start = time.thread_time()
            res = minimize(
                problem,
                algorithm,
                ("n_gen", job["generations"] + 1),
                seed=seed,
                verbose=False,
            )
            cpu = time.thread_time() - cpu_start
            elapsed = time.perf_counter() - start
            front = [] if res.F is None else res.F.tolist()
            results.append(
                {
                    "problem": name,
                    "seed": seed,
                    "seconds": elapsed,
                    "cpu_seconds": cpu,
                    "front": front,
                }
            )
    json.dump({"pymoo": __import__("pymoo").__version__, "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
