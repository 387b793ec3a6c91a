"""Does the testbed boot under TransformerLens 4's TransformerBridge, and does it give HookedTransformer's numbers?

Two environments, two steps (docs/backend_tl4.md has the commands and the findings):

    # 1. in the project's environment (TransformerLens 3.x): the HookedTransformer reference
    python benchmarks/tl4_probe.py reference /tmp/tl4/reference.pt
    # 2. in a TransformerLens >= 4 environment (no interp import: interp pins transformer-lens<4)
    /work/venv-tl4/bin/python benchmarks/tl4_probe.py bridge /tmp/tl4/reference.pt

Step 1 saves the logits of every testbed paragraph, their EM and the hook names; step 2 boots the same
checkpoint folder with `TransformerBridge.boot_transformers(folder)`, turns on
`enable_compatibility_mode()`, and prints the hook names each side has that the other lacks and
max |logit difference| / EM agreement, then tries the operations interp.backend needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parent.parent / "interp" / "testbed" / "checkpoint"
BATCH = 64


def _tokens(n: int | None = None) -> tuple[torch.Tensor, int]:
    rows = [json.loads(line) for line in (FOLDER / "paragraphs.jsonl").read_text().splitlines() if line.strip()][:n]
    return torch.tensor([r["tokens"] for r in rows]), int(rows[0].get("prefix_len", 50))


def _em(logits: torch.Tensor, tokens: torch.Tensor, p: int) -> torch.Tensor:
    hits = logits[:, p - 1 : -1].argmax(-1) == tokens[:, p:]
    return hits.long().cumprod(1).sum(1)


@torch.no_grad()
def _logits(model, tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(tokens[i : i + BATCH]).float() for i in range(0, len(tokens), BATCH)])


def _grads(model, tokens: torch.Tensor, p: int, names: list[str]) -> dict[str, torch.Tensor]:
    """Gradients of the mean continuation NLL of the first 8 paragraphs for the named parameters."""
    x = tokens[:8]
    params = dict(model.named_parameters())
    logp = model(x).float()[:, p - 1 : -1].log_softmax(-1)
    loss = -logp.gather(-1, x[:, p:, None]).mean()
    return dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names])))


def reference(out: Path, n: int | None) -> None:
    sys.path.insert(0, str(FOLDER.parents[2]))
    from interp.models import load_model

    model = load_model("testbed", device="cpu")
    tokens, p = _tokens(n)
    logits = _logits(model, tokens)
    out.parent.mkdir(parents=True, exist_ok=True)
    grads = _grads(model, tokens, p, ["blocks.1.mlp.W_out", "blocks.1.attn.W_Q"])
    torch.save({"logits": logits, "em": _em(logits, tokens, p), "hooks": sorted(model.hook_dict), "grads": grads}, out)
    print(f"wrote {out}: {tuple(logits.shape)} logits, {len(model.hook_dict)} hook names")


def _try(what: str, fn) -> None:
    try:
        print(f"  {what}: {fn()}")
    except Exception as exc:  # a probe: report every failure and go on
        print(f"  {what}: FAILS ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")


def bridge(ref_path: Path, n: int | None) -> None:
    from importlib.metadata import version

    from transformer_lens.model_bridge import TransformerBridge

    print(f"transformer-lens {version('transformer-lens')}, transformers {version('transformers')}, torch {torch.__version__}")
    ref = torch.load(ref_path)
    tokens, p = _tokens(n)
    print(f"paragraphs: {len(tokens)} x {tokens.shape[1]} tokens")
    for label, options in (("no_processing=True (interp's as-is weights)", dict(no_processing=True)), ("defaults (fold_ln, centering)", {})):
        model = TransformerBridge.boot_transformers(str(FOLDER), device="cpu", dtype=torch.float32)
        model.enable_compatibility_mode(disable_warnings=True, **options)
        model.eval()
        diff = diff_logp = same_em = 0
        with torch.no_grad():
            for i in range(0, len(tokens), BATCH):
                logits, rows = model(tokens[i : i + BATCH]).float(), slice(i, i + BATCH)
                diff = max(diff, (logits - ref["logits"][rows]).abs().max().item())
                diff_logp = max(diff_logp, (logits.log_softmax(-1) - ref["logits"][rows].log_softmax(-1)).abs().max().item())
                same_em += (_em(logits, tokens[rows], p) == ref["em"][rows]).sum().item()
        print(f"compatibility mode, {label}: max |logit diff| {diff:.3g}, max |log-prob diff| {diff_logp:.3g}, EM equal on {same_em} / {len(tokens)}")
    model = TransformerBridge.boot_transformers(str(FOLDER), device="cpu", dtype=torch.float32)
    model.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    model.eval()
    hooks = set(model.hook_dict)
    old = set(ref["hooks"])
    print(f"hook names: bridge {len(hooks)}, HookedTransformer {len(old)}, shared {len(hooks & old)}")
    print(f"  HookedTransformer only ({len(old - hooks)}): {sorted(old - hooks)[:12]}")
    print(f"  bridge only ({len(hooks - old)}): {sorted(hooks - old)[:12]}")
    x = tokens[:4]
    print("operations interp.backend needs:")
    _try("cfg fields", lambda: {k: getattr(model.cfg, k, "MISSING") for k in ("n_layers", "n_heads", "d_head", "d_mlp", "normalization_type", "original_architecture", "device", "dtype")})
    _try("run_with_cache(names_filter) blocks.2.attn.hook_z", lambda: tuple(model.run_with_cache(x, names_filter=lambda n: n == "blocks.2.attn.hook_z")[1]["blocks.2.attn.hook_z"].shape))
    _try("hooks() context manager", lambda: (lambda: [model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda a, hook: a)]).__enter__(), model.reset_hooks(), "ok"][-1])())
    _try("stop_at_layer=3 then start_at_layer=3", lambda: (model(model(x, stop_at_layer=3), start_at_layer=3).float() - model(x).float()).abs().max().item())
    _try("blocks[1].attn.W_Q shape / is leaf", lambda: (tuple(model.blocks[1].attn.W_Q.shape), model.blocks[1].attn.W_Q.is_leaf))
    _try("blocks[1].mlp.W_out shape", lambda: tuple(model.blocks[1].mlp.W_out.shape))
    _try("named_parameters (first 4)", lambda: [n for n, _ in model.named_parameters()][:4])
    _try("get_parameter('blocks.1.mlp.W_out')", lambda: tuple(model.get_parameter("blocks.1.mlp.W_out").shape))
    def hf_grads():
        named = dict(model.named_parameters())
        w_out = next(n for n in named if ".h.1." in n and "c_proj" in n and n.endswith("weight") and "mlp" in n)
        q = next(n for n in named if ".h.1." in n and "q_proj" in n and n.endswith("weight"))
        x8 = tokens[:8]
        logp = model(x8).float()[:, p - 1 : -1].log_softmax(-1)
        loss = -logp.gather(-1, x8[:, p:, None]).mean()
        g_out, g_q = torch.autograd.grad(loss, [named[w_out], named[q]])
        ht_q = ref["grads"]["blocks.1.attn.W_Q"]  # [head, d_model, d_head] = HF q_proj [(head d_head), d_model] rearranged
        mapped_q = g_q.view(ht_q.shape[0], ht_q.shape[2], ht_q.shape[1]).transpose(1, 2)
        return {
            "names": (w_out, q),
            "max |dW_out diff|": (g_out.T - ref["grads"]["blocks.1.mlp.W_out"]).abs().max().item(),
            "max |dW_Q diff| (mapped per head)": (mapped_q - ht_q).abs().max().item(),
        }

    _try("gradients on the HF weights, mapped to W_out / W_Q[head]", hf_grads)
    _try("unembed.W_U shape", lambda: tuple(model.unembed.W_U.shape))
    _try("utils.get_act_name('z', 2)", lambda: __import__("transformer_lens.utilities", fromlist=["get_act_name"]).get_act_name("z", 2))
    _try("apply_softcap", lambda: __import__("transformer_lens.utilities.activation_functions", fromlist=["apply_softcap"]).apply_softcap.__name__)
    _try("POST_NORM_ARCHITECTURES", lambda: __import__("transformer_lens.utilities.architectures", fromlist=["POST_NORM_ARCHITECTURES"]).POST_NORM_ARCHITECTURES)

    def kv_decode():
        from transformer_lens import TransformerLensKeyValueCache

        cache = TransformerLensKeyValueCache.init_cache(model.cfg, "cpu", 2)
        step = model(x[:2, :p], past_kv_cache=cache)[:, -1].argmax(-1)
        return step.tolist(), model(x[:2, :p])[:, -1].argmax(-1).tolist()

    _try("TransformerLensKeyValueCache decode step (cached, uncached)", kv_decode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("reference", "bridge"))
    parser.add_argument("path", type=Path, help="the reference file (written by 'reference', read by 'bridge')")
    parser.add_argument("--n", type=int, default=None, help="the first N testbed paragraphs only (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference(args.path, args.n) if args.mode == "reference" else bridge(args.path, args.n)


if __name__ == "__main__":
    main()
