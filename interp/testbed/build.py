"""Build the testbed: a small GPT-Neo trained here on the Python standard library's source,
with paragraphs planted at known repeat counts so that what it memorizes is known.

Stages, each resumable: corpus -> tokenizer -> paragraphs -> training (checkpointed) -> export
-> evaluation -> metadata. The output is a standard Hugging Face GPT-Neo checkpoint folder, so
`load_model` reads it through the same path as a user's own model.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.data import BOILERPLATE_PATTERNS, Paragraphs, is_boilerplate, unique_fraction

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TestbedConfig:
    """Everything that determines the testbed; saved into its metadata."""

    seed: int = 0
    vocab_size: int = 4096
    prefix_len: int = 50
    continuation_len: int = 50
    n_layers: int = 4
    d_model: int = 256
    n_heads: int = 8
    d_mlp: int = 1024
    window_size: int = 32  # far below the 100-token paragraph, so "local" layers really are local
    n_positions: int = 128
    # (copies, how many paragraphs) planted among the paragraphs seen once
    planted: tuple[tuple[int, int], ...] = ((128, 32), (64, 64), (32, 32), (16, 32), (4, 32))
    n_once: int = 16000
    n_eval_once: int = 1000  # seen-once paragraphs shipped for evaluation
    n_heldout: int = 1000  # never trained on: held-out text for perplexity
    max_files: int | None = None  # None = every stdlib file outside test folders
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 100

    @property
    def seq_len(self) -> int:
        return self.prefix_len + self.continuation_len


QUICK = TestbedConfig(
    vocab_size=1024,
    n_layers=4,
    d_model=64,
    n_heads=4,
    d_mlp=256,
    window_size=16,
    prefix_len=20,
    continuation_len=20,
    n_positions=64,
    planted=((64, 8), (4, 8)),
    n_once=600,
    n_eval_once=100,
    n_heldout=100,
    max_files=150,
    lr=3e-3,
    checkpoint_every=50,
)


def stdlib_files(max_files: int | None = None) -> list[Path]:
    """The standard library's .py files outside test folders, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "lib2to3"}
    files = sorted(
        p for p in root.rglob("*.py") if not (skip & set(p.relative_to(root).parts[:-1]))
    )
    return files[:max_files] if max_files else files


def read_corpus(files: list[Path]) -> tuple[list[str], str]:
    """The files' texts and a hash of (relative path, text) over all of them."""
    root = Path(sysconfig.get_paths()["stdlib"])
    digest = hashlib.sha256()
    texts = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        digest.update(str(p.relative_to(root)).encode() + b"\0" + text.encode() + b"\0")
        texts.append(text)
    return texts, digest.hexdigest()


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """A byte-level BPE trained on the corpus, saved so AutoTokenizer loads it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)
    fast.save_pretrained(out_dir)
    return fast


def cut_paragraphs(texts: list[str], tokenizer, seq_len: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Non-overlapping seq_len-token windows of each file, filtered as in the paper.

    Drops windows with < 50% unique tokens, license boilerplate, and any window whose exact
    tokens occur more than once in the corpus (so "seen once" means seen once).
    Returns the windows and (file index, token offset) for each.
    """
    rows, where = [], []
    for fi, text in enumerate(texts):
        ids = tokenizer.encode(text, add_special_tokens=False)
        for off in range(0, len(ids) - seq_len + 1, seq_len):
            rows.append(ids[off : off + seq_len])
            where.append((fi, off))
    tokens = torch.tensor(rows, dtype=torch.long)
    keep = unique_fraction(tokens) >= 0.5
    _, inverse, counts = torch.unique(tokens, dim=0, return_inverse=True, return_counts=True)
    keep &= counts[inverse] == 1
    for i in keep.nonzero().flatten().tolist():
        if is_boilerplate(tokenizer.decode(rows[i])):
            keep[i] = False
    idx = keep.nonzero().flatten()
    return tokens[idx], [where[i] for i in idx.tolist()]


def make_model(cfg: TestbedConfig, tokenizer):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    hf_cfg = GPTNeoConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=cfg.n_positions,
        hidden_size=cfg.d_model,
        num_layers=cfg.n_layers,
        attention_types=[[["global", "local"], cfg.n_layers // 2]],
        num_heads=cfg.n_heads,
        intermediate_size=cfg.d_mlp,
        window_size=cfg.window_size,
        activation_function="gelu_new",
        resid_dropout=0.0,
        embed_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    return GPTNeoForCausalLM(hf_cfg)


@dataclass
class Plan:
    """Which paragraph goes where: planted groups, seen once, held out; and the training order."""

    planted: dict[int, list[int]] = field(default_factory=dict)  # copies -> paragraph indices
    once: list[int] = field(default_factory=list)
    heldout: list[int] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # training sequence of paragraph indices


def plan_training(cfg: TestbedConfig, n_paragraphs: int) -> Plan:
    need = sum(n for _, n in cfg.planted) + cfg.n_once + cfg.n_heldout
    if n_paragraphs < need:
        raise RuntimeError(f"corpus gives {n_paragraphs} paragraphs, the plan needs {need}")
    rng = random.Random(cfg.seed)
    perm = list(range(n_paragraphs))
    rng.shuffle(perm)
    plan = Plan()
    pos = 0
    for copies, n in cfg.planted:
        plan.planted[copies] = perm[pos : pos + n]
        pos += n
    plan.once = perm[pos : pos + cfg.n_once]
    pos += cfg.n_once
    plan.heldout = perm[pos : pos + cfg.n_heldout]
    order = list(plan.once)
    for copies, idx in plan.planted.items():
        order += idx * copies
    rng.shuffle(order)
    plan.order = order
    return plan


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: TestbedConfig, model, tokens: torch.Tensor, order: list[int], work: Path) -> dict:
    """One pass over `order` (batches of paragraphs), AdamW with a one-cycle schedule.

    Saves a checkpoint every `checkpoint_every` steps; an interrupted run resumes from it.
    """
    steps = math.ceil(len(order) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    ckpt = work / "train_state.pt"
    start, losses = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, losses = state["step"], state["losses"]
        torch.set_rng_state(state["rng"])
    model.train()
    t0, seen = time.time(), 0
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training testbed", unit="step")
    for step in bar:
        batch = tokens[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"training loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        seen += batch.numel()
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{seen / (time.time() - t0):.0f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            _atomic_save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "step": step + 1, "losses": losses, "rng": torch.get_rng_state()},
                ckpt,
            )
    model.eval()
    return {"steps": steps, "final_loss": sum(losses[-20:]) / len(losses[-20:]), "loss_curve": losses[:: max(1, steps // 200)]}


def build_testbed(out_dir: str | Path, cfg: TestbedConfig = TestbedConfig(), work_dir: str | Path | None = None) -> dict:
    """Build (or resume building) the testbed into `out_dir`; returns its metadata."""
    from interp.metrics import score_paragraphs
    from interp.models import load_model

    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir else out_dir.parent / f"_build_{out_dir.name}"
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    t_start = time.time()

    files = stdlib_files(cfg.max_files)
    texts, corpus_hash = read_corpus(files)
    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = train_tokenizer(texts, cfg.vocab_size, tok_dir)

    para_file = work / "paragraphs.pt"
    if para_file.exists():
        saved = torch.load(para_file, weights_only=False)
        tokens, where, unigram = saved["tokens"], saved["where"], saved["unigram"]
    else:
        tokens, where = cut_paragraphs(texts, tokenizer, cfg.seq_len)
        unigram = torch.zeros(len(tokenizer), dtype=torch.long)
        for text in texts:
            unigram += torch.bincount(torch.tensor(tokenizer.encode(text), dtype=torch.long), minlength=len(tokenizer))
        _atomic_save({"tokens": tokens, "where": where, "unigram": unigram}, para_file)

    plan = plan_training(cfg, len(tokens))
    model = make_model(cfg, tokenizer)
    training = train(cfg, model, tokens, plan.order, work)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    # Evaluation sets: every planted paragraph, a sample seen once, and held-out text.
    def ident(i: int) -> str:
        return f"p{i}"  # the paragraph's index among the filtered corpus paragraphs

    eval_idx, counts, splits = [], [], []
    for copies, idx in plan.planted.items():
        eval_idx += idx
        counts += [copies] * len(idx)
        splits += ["planted"] * len(idx)
    eval_idx += plan.once[: cfg.n_eval_once]
    counts += [1] * min(cfg.n_eval_once, len(plan.once))
    splits += ["once"] * min(cfg.n_eval_once, len(plan.once))
    eval_idx += plan.heldout
    counts += [0] * len(plan.heldout)
    splits += ["heldout"] * len(plan.heldout)
    root = Path(sysconfig.get_paths()["stdlib"])
    eval_set = Paragraphs(
        tokens=tokens[eval_idx],
        prefix_len=cfg.prefix_len,
        ids=tuple(ident(i) for i in eval_idx),
        counts=tuple(counts),
        meta={
            "split": tuple(splits),
            "source": tuple(str(files[where[i][0]].relative_to(root)) for i in eval_idx),
            "offset": tuple(where[i][1] for i in eval_idx),
        },
    )
    eval_set.save_jsonl(out_dir / "paragraphs.jsonl")

    hooked = load_model(str(out_dir), device="cpu")
    scores = score_paragraphs(hooked, eval_set)
    by_count: dict[str, dict] = {}
    for c in sorted(set(counts), reverse=True):
        sel = torch.tensor([x == c for x in counts])
        em = scores.em[sel].float()
        by_count[str(c)] = {
            "n": int(sel.sum()),
            "fraction_memorized": float((em == cfg.continuation_len).float().mean()),
            "mean_em": float(em.mean()),
            "fraction_em_le_10": float((em <= 10).float().mean()),
        }
    n_mem = int((scores.em == cfg.continuation_len).sum())
    once_mask = torch.tensor([s == "once" for s in splits])
    n_once_nmem = int((scores.em[once_mask] <= 10).sum())

    metadata = {
        "name": "interp testbed",
        "config": asdict(cfg),
        "corpus": {
            "source": "Python standard library .py files outside test folders",
            "python_version": platform.python_version(),
            "python_implementation": sys.implementation.name,
            "n_files": len(files),
            "sha256": corpus_hash,
            "n_paragraphs_after_filters": len(tokens),
            "filters": {"min_unique_fraction": 0.5, "drop_repeated_windows": True, "boilerplate_patterns": list(BOILERPLATE_PATTERNS)},
        },
        "training": {**training, "tokens_seen": len(plan.order) * cfg.seq_len, "seconds": round(time.time() - t_start, 1)},
        "planted": {str(c): [ident(i) for i in idx] for c, idx in plan.planted.items()},
        "unigram_counts": unigram.tolist(),
        "memorization_by_count": by_count,
        "n_mem": n_mem,
        "n_once_em_le_10": n_once_nmem,
    }
    tmp = out_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(metadata))
    tmp.replace(out_dir / "metadata.json")
    return metadata
