"""Do the two backends give the same numbers? HookedTransformer (TransformerLens 3.x) vs TransformerBridge (>= 4).

The two backends cannot share one environment (TransformerLens 3.x has no bridge, 4.x no HookedTransformer),
so this runs twice, once in each, on the same checkpoint, paragraphs and settings:

    # 1. in an environment with transformer-lens>=3.9,<4: every quantity, saved
    INTERP_BACKEND=hooked python benchmarks/backend_parity.py run /tmp/parity/hooked.pt
    # 2. in an environment with transformer-lens>=4: the same, saved
    INTERP_BACKEND=bridge python benchmarks/backend_parity.py run /tmp/parity/bridge.pt
    # 3. in either: the table (quantity, max |difference|, tolerance, pass), exit 1 on any failure
    python benchmarks/backend_parity.py compare /tmp/parity/hooked.pt /tmp/parity/bridge.pt [--markdown F]

`--model` takes any checkpoint folder `interp.load_model` reads whose tokenizer is the testbed's (default: the
testbed); `neox FOLDER` writes a small random GPT-NeoX one. The paragraphs are the testbed's. MEM / NMEM are the 16 highest / lowest EM
of each run's own scores (a stable order), so both runs use the same sets whenever their EMs agree, which the
table checks first ("scores"). A quantity a
backend cannot compute is saved as its error message and reported as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

TOLERANCE = 1e-4
EXPECTED = {  # quantities that cannot agree, and why (reported as such, not as failures)
    "inject_head": "HookedTransformer gives GPT-Neo zero query/key/value biases (b_Q, b_K, b_V) that the "
    "checkpoint does not have; head injection trains them there and cannot here, so the injected copies differ "
    "(and the checkpoint save_model writes from the hooked copy has no place for them)",
}


def _tensors(prefix: str, value, out: dict[str, torch.Tensor]) -> None:
    """Every tensor and number inside a result (dataclass fields, dicts, sequences), under dotted names."""
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu()
    elif isinstance(value, (tuple, list)) and not all(isinstance(v, str) for v in value):
        for i, v in enumerate(value):
            if not isinstance(v, torch.nn.Module):
                _tensors(f"{prefix}.{i}", v, out)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name != "model":
                _tensors(f"{prefix}.{f.name}", getattr(value, f.name), out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _tensors(f"{prefix}.{k}", v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = torch.tensor(value)


def make_neox(folder: Path) -> None:
    """A small GPT-NeoX (Pythia's architecture: rotary, parallel attention and MLP) with random weights and the
    testbed's tokenizer, so the testbed's paragraphs run through it; written once, read by both backends."""
    import shutil

    import transformers as tf

    from interp.models import TESTBED_DIR

    torch.manual_seed(0)
    cfg = tf.GPTNeoXConfig(
        vocab_size=4096,
        max_position_embeddings=128,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
    )
    model = tf.GPTNeoXForCausalLM(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (TESTBED_DIR / name).exists():
            shutil.copy(TESTBED_DIR / name, folder / name)
    print(f"wrote a random GPT-NeoX checkpoint to {folder}")


def _quantized(model) -> dict[str, object]:
    """int4 (group-wise) copy: its relative error per matrix and its logits on a few paragraphs."""
    import interp
    from interp.audit.quantization import quantized

    copy_, errors = quantized(model, 4, 32)
    with torch.no_grad():
        logits = copy_(interp.testbed_paragraphs().tokens[:4]).float()
    return {"errors": errors, "logits": logits}


def run(out_path: Path, model_spec: str) -> None:
    import interp
    from interp import backend
    from interp.perturbation import corrupt_prefixes
    from interp.unlearning import UnlearnConfig, unlearn

    torch.manual_seed(0)
    model = interp.load_model(model_spec, device="cpu")
    paragraphs = interp.testbed_paragraphs()  # token ids < 4096: any model with the testbed's tokenizer reads them
    counts = interp.testbed_unigram_counts()
    first = paragraphs.select(range(min(256, len(paragraphs))))
    results: dict[str, object] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}

    def measure(name: str, fn) -> None:
        start = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # a backend that cannot do something says so; the table records it
            errors[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        seconds[name] = time.perf_counter() - start

    with torch.no_grad():
        measure("logits", lambda: model(first.tokens[:16]).float())
    measure("scores", lambda: interp.score_paragraphs(model, first))
    em = interp.score_paragraphs(model, first).em if "scores" in results else torch.zeros(len(first))
    order = torch.argsort(torch.as_tensor(em).float(), descending=True, stable=True)
    mem, nmem = first.select(order[:16].sort().values), first.select(order[-16:].sort().values)
    measure("gradient_map.nll", lambda: interp.gradient_map(model, mem, nmem, objective="nll"))
    measure("gradient_map.contrastive", lambda: interp.gradient_map(model, mem, nmem, objective="contrastive"))
    measure("per_paragraph_norms", lambda: interp.per_paragraph_norms(model, mem.select(range(8))))
    if counts is not None:
        measure("rare_token_attention", lambda: interp.rare_token_attention(model, mem, counts, null_draws=200))
    corrupted = corrupt_prefixes(mem.select(range(8)), 0.5, model.cfg.d_vocab, seed=0)
    measure(
        "activation_patching",
        lambda: interp.activation_patching(model, mem.select(range(8)), corrupted, kinds=("head_out", "mlp_out")),
    )
    measure("attribution_patching", lambda: interp.attribution_patching(model, mem.select(range(8)), corrupted))
    reference = paragraphs.select(range(256, 272))  # never scored above: the mean-ablation reference
    measure("head_ablation", lambda: interp.head_ablation(model, mem, nmem, reference=reference))
    measure("greedy_exact_match", lambda: interp.greedy_exact_match(model, mem))
    measure(
        "prefix_perturbation", lambda: interp.prefix_perturbation(model, mem.select(range(4)), samples_per_position=1)
    )
    measure("gradient_scores", lambda: interp.gradient_scores(model, mem.select(range(8)), nmem.select(range(8))))
    measure("integrated_gradients", lambda: interp.integrated_gradients(model, mem.select(range(8)), steps=4))
    measure("quantized_int4", lambda: _quantized(model))
    measure(
        "inject_head",
        lambda: interp.inject_head(
            model,
            nmem.select(range(2)),
            2,
            3,
            retain=nmem.select(range(8, 12)),
            heldout=reference.select(range(4)),
            lr=3e-3,
            max_steps=10,
        ),
    )
    measure(
        "reft_unlearn",
        lambda: interp.reft_unlearn(model, mem.select([0]), nmem.select(range(8)), interp.ReftConfig(steps=5)),
    )
    config = UnlearnConfig(method="unlearn", select="topk", fraction=0.001, lr=1e-3, steps=5, seed=0)
    target, retain = mem.select([0]), nmem.select(range(8))
    measure("unlearn", lambda: unlearn(model, target, retain, config))
    if "unlearn" in results:
        edited = results["unlearn"].model
        measure("unlearn.hf_state", lambda: dict(backend.hf_state(edited)))

        def saved_checkpoint():
            from safetensors.torch import load_file

            with tempfile.TemporaryDirectory() as folder:
                interp.save_model(edited, folder)
                return load_file(str(Path(folder) / "model.safetensors"))

        measure("unlearn.saved_checkpoint", saved_checkpoint)
        measure("restoration", lambda: interp.restoration(model, edited, target))
    flat: dict[str, torch.Tensor] = {}
    for name, value in results.items():
        _tensors(name, value, flat)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"backend": backend.NAME, "tensors": flat, "errors": errors, "seconds": seconds}, out_path)
    print(f"{backend.NAME}: {len(flat)} tensors, {len(errors)} errors -> {out_path}")
    for name, message in errors.items():
        print(f"  {name}: {message}")


def _alias(name: str) -> str:
    """Checkpoint names that differ only by transformers' version (NeoX's unembedding)."""
    return name.replace("embed_out.weight", "lm_head.weight")


def _timing(name: str) -> bool:
    """Wall-clock fields, which no two runs share."""
    return name.rsplit(".", 1)[-1] in ("seconds", "elapsed", "wall_s")


def _normalizer(tensors: dict[str, torch.Tensor], key: str) -> float | None:
    """|clean - corrupted| for a patching effect (`effect = (m - corrupted) / (clean - corrupted)`), else None.

    On a model whose clean and corrupted metrics nearly coincide (a random model: 6e-4 apart on 8.4) the
    normalization multiplies float rounding by 1 / |clean - corrupted|; the effect is compared after scaling
    back to the metric's units, where 1e-4 means what it means for every other quantity."""
    if not key.endswith(".effect"):
        return None
    base = key[: -len("effect")]
    if base + "clean_metric" not in tensors or base + "corrupted_metric" not in tensors:
        return None
    return abs(float(tensors[base + "clean_metric"]) - float(tensors[base + "corrupted_metric"]))


def compare(a_path: Path, b_path: Path, markdown: Path | None) -> int:
    a, b = torch.load(a_path), torch.load(b_path)
    rows, failed = [], 0
    groups = sorted(
        {
            k.split(".")[0] if not k.startswith(("gradient_map", "unlearn")) else ".".join(k.split(".")[:2])
            for k in set(a["tensors"]) | set(b["tensors"])
        }
        | set(a["errors"])
        | set(b["errors"])
    )
    tb = {_alias(k): v for k, v in b["tensors"].items() if not _timing(k)}
    ta = {_alias(k): v for k, v in a["tensors"].items() if not _timing(k)}
    for group in groups:
        keys = sorted(k for k in set(ta) | set(tb) if k == group or k.startswith(group + "."))
        error = a["errors"].get(group) or b["errors"].get(group)
        if error:
            side = a["backend"] if group in a["errors"] else b["backend"]
            rows.append((group, "-", "-", f"not computed on {side}: {error}"))
            failed += 1
            continue
        only = [k for k in keys if (k in ta) != (k in tb)]
        worst, where, exact = 0.0, "", True
        for k in keys:
            if k not in ta or k not in tb:
                continue
            x, y = ta[k], tb[k]
            if x.shape != y.shape:
                worst, where = float("inf"), f"{k}: shapes {tuple(x.shape)} vs {tuple(y.shape)}"
                break
            spread = _normalizer(ta, k)
            if spread is not None:  # a normalized effect: compare it in the metric's own units (see _normalizer)
                x, y = x * spread, y * spread
            if x.is_floating_point() or y.is_floating_point():
                finite = torch.isfinite(x.double()) & torch.isfinite(y.double())
                if not torch.equal(torch.isfinite(x.double()), torch.isfinite(y.double())):
                    worst, where = float("inf"), f"{k}: different non-finite entries"
                    break
                d = float((x.double() - y.double())[finite].abs().max()) if finite.any() else 0.0
                exact &= d == 0.0
            else:
                d = float((x != y).sum())  # integer / bool results: the number of entries that differ
                exact &= d == 0.0
            if d > worst:
                worst, where = d, k
        ok = worst <= TOLERANCE and not only
        if not ok and group in EXPECTED:
            rows.append((group, f"{len(keys)}", f"{worst:.3g}", f"differs, as expected: {EXPECTED[group]}"))
            continue
        failed += not ok
        note = "bit-identical" if exact and not only else where
        if only:
            note = f"{len(only)} entries on one side only, e.g. {only[0]}"
        rows.append((group, f"{len(keys)}", f"{worst:.3g}", ("pass " if ok else "FAIL ") + note))
    header = f"| quantity | tensors | max abs difference ({a['backend']} vs {b['backend']}) | within {TOLERANCE:g} |"
    lines = [header, "|---|---|---|---|"] + [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    print("\n".join(lines))
    if markdown:
        markdown.write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="compute every quantity with the active backend and save it")
    r.add_argument("out", type=Path)
    r.add_argument("--model", default="testbed")
    n = sub.add_parser("neox", help="write a small random GPT-NeoX checkpoint (the testbed's tokenizer) to run on")
    n.add_argument("folder", type=Path)
    c = sub.add_parser("compare", help="the table of two saved runs")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.model)
        return 0
    if args.command == "neox":
        make_neox(args.folder)
        return 0
    return compare(args.a, args.b, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
