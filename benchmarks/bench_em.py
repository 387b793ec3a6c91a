"""EM three ways, interleaved in one run: greedy decoding, one full-logits forward, and `score_paragraphs`.

    python benchmarks/bench_em.py [--n 64] [--n-125m 8] [--repeats 3] [--json OUT]

For the testbed and a GPT-Neo-125M-shaped model with random weights: the median wall time and
spread of
- greedy decoding (metrics.greedy_exact_match: one KV-cached forward per new token), the
  definition of EM;
- one teacher-forced TransformerLens forward with logits at every position and a log-softmax
  over them (what score_paragraphs did before it unembedded the continuation only);
- score_paragraphs (one teacher-forced forward, logits of the continuation positions only);
their ratios, achieved GFLOP/s against a matmul peak of the same run, and whether all three EMs
are equal (they must be).
"""

from __future__ import annotations

import argparse

import torch
from harness import Method, Session, add_arguments, forward_flops, greedy_flops, neo_125m_shaped
from transformer_lens import HookedTransformer

from interp import greedy_exact_match, load_model, score_paragraphs, testbed_paragraphs
from interp.data import Paragraphs
from interp.metrics import continuation_log_probs, em_from_hits

GREEDY, FULL, OURS = "greedy decoding", "full-logits forward", "score_paragraphs"


def full_logits_em(
    model: HookedTransformer, paragraphs: Paragraphs, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """EM and NLL from forwards that compute every position's logits (the reference path)."""
    ems, nlls = [], []
    p = paragraphs.prefix_len
    for start in range(0, len(paragraphs), batch_size):
        tokens = paragraphs.tokens[start : start + batch_size].to(model.cfg.device)
        logits = model(tokens).float()
        nlls.append(-continuation_log_probs(logits, tokens, p).mean(1).cpu())
        ems.append(em_from_hits(logits[:, p - 1 : -1].argmax(-1) == tokens[:, p:]).cpu())
    return torch.cat(ems), torch.cat(nlls)


def compare(session: Session, name: str, model: HookedTransformer, paragraphs: Paragraphs, warmup: bool) -> None:
    cfg, n, seq, p = model.cfg, len(paragraphs), paragraphs.seq_len, paragraphs.prefix_len
    tokens = n * seq
    methods = [
        Method(
            GREEDY,
            lambda: greedy_exact_match(model, paragraphs),
            flops=greedy_flops(cfg, n, p, seq - p),
            tokens=n * (seq - 1),
            layer_tokens=n * (seq - 1) * cfg.n_layers,
        ),
        Method(
            FULL,
            lambda: full_logits_em(model, paragraphs),
            flops=forward_flops(cfg, n, seq),
            tokens=tokens,
            layer_tokens=tokens * cfg.n_layers,
        ),
        Method(
            OURS,
            lambda: score_paragraphs(model, paragraphs),
            flops=forward_flops(cfg, n, seq, logit_positions=seq - p),
            tokens=tokens,
            layer_tokens=tokens * cfg.n_layers,
        ),
    ]
    timings = session.time(methods, warmup=warmup)
    scores, (full_em, full_nll) = timings[OURS].result, timings[FULL].result
    equal = bool(torch.equal(timings[GREEDY].result, scores.em) and torch.equal(full_em, scores.em))
    nll_diff = float((full_nll - scores.nll).abs().max())
    case = f"{name}: {n} paragraphs of {p} + {seq - p} tokens"
    session.report(case, timings, baseline=GREEDY, candidate=OURS, em_equal=equal)
    session.report(
        case, timings, baseline=FULL, candidate=OURS, show_methods=False, em_equal=equal, max_nll_diff=nll_diff
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="testbed paragraphs (spread over the whole set)")
    ap.add_argument("--n-125m", type=int, default=8)
    add_arguments(ap)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    session = Session("bench_em", args)
    testbed = load_model("testbed", device="cpu")
    paragraphs = testbed_paragraphs()
    step = max(1, len(paragraphs) // args.n)
    compare(session, "testbed", testbed, paragraphs.select(range(0, step * args.n, step)), warmup=True)
    big = neo_125m_shaped()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, big.cfg.d_vocab, (args.n_125m, 100), generator=g)
    compare(
        session, "GPT-Neo-125M-shaped", big, Paragraphs(tokens, 50, tuple(map(str, range(args.n_125m)))), warmup=False
    )
    session.finish()


if __name__ == "__main__":
    main()
