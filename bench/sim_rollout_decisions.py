"""How often the rollout's decisions err, and their power, on simulated traffic with a known truth.

Usage::

    python bench/sim_rollout_decisions.py [--rollouts N] [--look-every K [K ...]] [--seed S] [--json PATH]

Rollouts of :mod:`kfp_mlops.rollout.simulation` (the package's metric engine, delta-method
standard errors and ``decide``), 10 % fraud, the legacy model at AUC-PR 0.56, under two plans
whose last gate (the promotion to 100 %) is

* **paired**: a shadow stage (both models score every request), then 100 %;
* **unpaired**: a 50 % canary (each request scored by one model), then 100 %;

each with ``min_labelled`` 250 (25 frauds), ``max_labelled`` 8,000 and a look after every ``K``
labelled challenger requests. Challengers by their true AUC-PR difference: equal (0), slightly
worse (-0.01, inside the 0.02 tolerance), clearly worse (-0.10), clearly better (+0.10). For each,
the share of rollouts that reached 100 % (``promoted``) and the median labelled challenger
requests it took, under the rule in force (``sequential``: 95 % confidence sequences) and the
rule before it (``fixed``: 95 % intervals at every look). An equal or worse challenger should
reach 100 % in at most 5 % of rollouts; the clearly better one in most.

Prints one table (and writes the rows as JSON with ``--json``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kfp_mlops.rollout import StagePlan
from kfp_mlops.rollout.simulation import RULES, Traffic, simulate_rollouts, summarize

SCENARIOS = {"equal": 0.0, "slightly worse": -0.01, "clearly worse": -0.10, "clearly better": 0.10}
LIMITS = {"min_labelled": 250, "min_positives": 20, "max_labelled": 8000, "max_p99_latency_ms": 1000.0}
PLANS = {
    "paired": StagePlan(shadow=True, steps=(100,), **LIMITS),  # type: ignore[arg-type]
    "unpaired": StagePlan(shadow=False, steps=(50, 100), **LIMITS),  # type: ignore[arg-type]
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=400, help="rollouts per cell (default 400)")
    parser.add_argument("--look-every", type=int, nargs="+", default=[250, 1000], help="labelled requests per look")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    traffic = Traffic()
    rows = []
    print(f"{args.rollouts} rollouts per cell; 10 % fraud; legacy AUC-PR {traffic.true_auc_pr(1.7):.3f}")
    print(f"{'challenger':<15} {'gate':<9} {'look':>5} {'rule':<11} {'promoted':>9} {'median labelled':>16} {'s':>5}")
    for scenario, difference in SCENARIOS.items():
        separation = traffic.separation_for(difference)
        for gate, plan in PLANS.items():
            for look_every in args.look_every:
                for rule in RULES:
                    started = time.perf_counter()
                    outcomes = simulate_rollouts(
                        plan,
                        traffic,
                        separation,
                        rollouts=args.rollouts,
                        look_every=look_every,
                        seed=args.seed,
                        rule=rule,
                    )
                    seconds = time.perf_counter() - started
                    summary = summarize(outcomes, plan.stages()[0].name)
                    rows.append(
                        {
                            "challenger": scenario,
                            "difference": difference,
                            "gate": gate,
                            "look_every": look_every,
                            "rule": rule,
                            **summary,
                        }
                    )
                    print(
                        f"{scenario:<15} {gate:<9} {look_every:>5} {rule:<11} {summary['promoted']:>8.1%} "
                        f"{summary['median_labelled_to_promote']:>16.0f} {seconds:>5.0f}",
                        flush=True,
                    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
