"""Why a neuron method misses injected neurons: rerun one seed's neuron injection of `interp validate-locator`,
then per injected neuron its rank under each method (all neurons together), how far the injection moved its W_out
row, and what zeroing it alone costs the injected paragraphs (docs/locator_trust.md).

    python analyses/neuron_misses.py 4      # the seed; about 6 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import sys

import torch

import interp.locator.validation as validation
from interp import load_model, testbed_paragraphs
from interp.backend import act_name, hooks_on
from interp.metrics import score_paragraphs

captured: dict = {}
_locate = validation.locate_neurons


def _keep(forced, mem, **options):
    """The benchmark's own ranking call, keeping the injected copy and its scores for the per-neuron table."""
    ranking = _locate(forced, mem, **options)
    captured.update(forced=forced, mem=mem, ranking=ranking)
    return ranking


def main(seed: int) -> None:
    validation.locate_neurons = _keep
    model = load_model("testbed", device="cpu")
    result = validation.validate_locator(
        model, testbed_paragraphs(), heads=[], neurons=True, seeds=(seed,), methods=("rare_token",)
    )
    check, forced, mem, ranking = result.neurons, captured["forced"], captured["mem"], captured["ranking"]
    n_units = model.cfg.d_mlp
    units = check.injection.units.tolist()
    k = len(units)
    base = float(score_paragraphs(forced, mem).nll.mean())
    rows = []
    for layer, n in units:

        def zero(x, hook, n=n):
            x[..., n] = 0
            return x

        with hooks_on(forced, [(act_name("post", layer), zero)]), torch.no_grad():
            cost = float(score_paragraphs(forced, mem).nll.mean()) - base
        moved = float((forced.blocks[layer].mlp.W_out[n] - model.blocks[layer].mlp.W_out[n]).norm())
        ranks = {
            m: int((res.score.flatten().argsort(descending=True) == layer * n_units + n).nonzero())
            for m, res in ranking.results.items()
        }
        rows.append({"unit": [layer, n], "ablation_nll_gain": cost, "dW_out_norm": moved, "ranks": ranks})
    print(json.dumps({"seed": seed, "recall": check.recall, "recall_ceiling": check.ceiling, "base_nll": base}))
    for row in sorted(rows, key=lambda r: -r["ablation_nll_gain"]):
        found = [m for m, r in row["ranks"].items() if r < k]
        print(
            f"L{row['unit'][0]}N{row['unit'][1]:<5} ablation +{row['ablation_nll_gain']:.4f} nats  "
            f"|dW_out| {row['dW_out_norm']:6.2f}  ranks {row['ranks']}  in the top {k} of: {', '.join(found) or '-'}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
