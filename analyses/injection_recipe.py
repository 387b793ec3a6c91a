"""Try one head-injection recipe on the testbed (docs/locator_injection.md). Prints one JSON line.

The injected, retain and held-out paragraphs are the ones `validate-locator --seed SEED` draws (same pools),
optionally cut to the first N of them and to CONT continuation tokens (shorter text per head); only the
injection runs, not the locator.

    python analyses/injection_recipe.py --seed 0 --head 5.5 --n 4 --cont 16 --lr auto --schedule cosine
"""

from __future__ import annotations

import argparse
import json

from interp import load_model, testbed_paragraphs
from interp.data import Paragraphs
from interp.io import to_jsonable
from interp.locator.injection import inject_head
from interp.locator.validation import _pools
from interp.metrics import NMEM_MAX_EM


def cut(paragraphs: Paragraphs, n: int, cont: int) -> Paragraphs:
    """The first `n` paragraphs with their continuations cut to `cont` tokens."""
    head = paragraphs.select(list(range(min(n, len(paragraphs)))))
    return Paragraphs(head.tokens[:, : head.prefix_len + cont], head.prefix_len, head.ids, head.counts, head.meta)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", default="5.5", help="LAYER.HEAD")
    ap.add_argument("--n", type=int, default=4, help="injected paragraphs")
    ap.add_argument("--cont", type=int, default=50, help="continuation tokens per paragraph")
    ap.add_argument("--lr", default="auto")
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--kl", type=float, default=1.0)
    ap.add_argument("--with-mlp", action="store_true")
    args = ap.parse_args()
    layer, head = (int(x) for x in args.head.split("."))
    model = load_model("testbed")
    sizes = {"inject": 4, "retain": 16, "heldout": 32, "nmem": 8, "reference": 8}
    sets = _pools(model, testbed_paragraphs(), NMEM_MAX_EM, sizes, args.seed, 64)
    injected = cut(sets["inject"], args.n, args.cont)
    retain, heldout = (cut(sets[k], len(sets[k]), args.cont) for k in ("retain", "heldout"))
    _, info = inject_head(
        model,
        injected,
        layer,
        head,
        retain=retain,
        heldout=heldout,
        lr=args.lr if args.lr == "auto" else float(args.lr),
        max_steps=args.max_steps,
        kl_weight=args.kl,
        schedule=args.schedule,
        with_mlp=args.with_mlp,
    )
    out = {"recipe": vars(args)} | info.to_json() | {"loss_min": min(info.loss)}
    print(json.dumps(to_jsonable(out)))


if __name__ == "__main__":
    main()
