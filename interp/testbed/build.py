"""Build the testbed: a small GPT-Neo trained here, as in pretraining, on the Python standard
library's source, with paragraphs planted at known repeat counts, each copy at a fresh uniformly
random offset inside a full-context training sequence, so that what it memorizes is known and is
recalled by content, not by position.

Stages, each resumable: corpus -> tokenizer -> data (stream, planted paragraphs, layout of the
training sequences) -> training (checkpointed) -> export -> evaluation -> metadata. The output is
a standard Hugging Face GPT-Neo checkpoint folder, so `load_model` reads it through the same path
as a user's own model.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import platform
import random
import sys
import sysconfig
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
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
    n_layers: int = 6
    d_model: int = 256
    n_heads: int = 8
    d_mlp: int = 1024
    window_size: int = 64  # local layers see 64 tokens: well below the 256-token context
    context: int = 256  # length of every training sequence = number of position embeddings
    # (copies, how many paragraphs): copies inserted into the stream, each at its own random offset
    planted: tuple[tuple[int, int], ...] = ((1024, 16), (512, 16), (256, 16), (128, 16), (32, 16), (8, 16))
    stream_tokens: int | None = 2_950_000  # ordinary text trained on (seen once); None = all stream documents
    heldout_tokens: int = 250_000  # documents held out of the stream: planted, held-out and filler text
    copies_per_sequence: int = 2  # two copies share a sequence when their offsets leave room for both
    margin: int = 1  # real text before and after every copy, at least this many tokens
    dedup_ngram: int = 50  # no n-token piece of an evaluation paragraph occurs anywhere else
    n_eval_once: int = 1000  # stream windows seen once, shipped for evaluation
    n_heldout: int = 1000  # never trained on: held-out text for perplexity and as filler
    max_files: int | None = None  # None = every stdlib file outside test folders
    batch_size: int = 16
    lr: float = 2e-3
    warmup: float = 0.05  # share of the steps spent warming up (one-cycle schedule)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    storage_dtype: str = "float16"  # shipped weights; load_model returns float32
    robustness_ks: tuple[int, ...] = (0, 17, 64, 150)  # tokens of unrelated text before a paragraph
    # planted paragraph ids kept out of training: each of their copies is replaced by a window of
    # ordinary stream text drawn at random (the reference model, which never saw them)
    left_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n_layers % 2:
            raise ValueError("n_layers must be even: layers alternate global and local attention")
        if not 0 < self.dedup_ngram <= self.seq_len:
            raise ValueError(f"dedup_ngram must be between 1 and the paragraph length {self.seq_len}")
        if self.copies_per_sequence not in (1, 2):
            raise ValueError("copies_per_sequence must be 1 or 2")
        if self.storage_dtype not in ("float16", "float32"):
            raise ValueError("storage_dtype must be 'float16' or 'float32'")
        if self.offset_range[1] < self.offset_range[0]:
            raise ValueError(
                f"a context of {self.context} leaves no room for a {self.seq_len}-token paragraph with {self.margin} tokens either side"
            )

    @property
    def seq_len(self) -> int:
        return self.prefix_len + self.continuation_len

    @property
    def offset_range(self) -> tuple[int, int]:
        """First and last start offset a planted copy can take inside a training sequence."""
        return self.margin, self.context - self.seq_len - self.margin


QUICK = TestbedConfig(
    vocab_size=1024,
    n_layers=2,
    d_model=64,
    n_heads=4,
    d_mlp=256,
    window_size=16,
    context=64,
    prefix_len=20,
    continuation_len=20,
    dedup_ngram=20,
    planted=((96, 6), (4, 6)),
    stream_tokens=60_000,
    heldout_tokens=15_000,
    n_eval_once=100,
    n_heldout=100,
    max_files=150,
    batch_size=16,
    lr=3e-3,
    checkpoint_every=50,
    robustness_ks=(0, 5, 12, 22),
)


# ---- corpus and tokenizer ----


def stdlib_files(max_files: int | None = None) -> list[Path]:
    """The standard library's .py files outside test folders, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "lib2to3"}
    files = sorted(p for p in root.rglob("*.py") if not (skip & set(p.relative_to(root).parts[:-1])))
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


# ---- data: stream, evaluation paragraphs, training sequences ----


def ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every n-token window: entry i covers tokens[i : i + n]."""
    if len(tokens) < n:
        return np.zeros(0, dtype=np.uint64)
    powers = np.cumprod(np.full(n, 0x9E3779B97F4A7C15, dtype=np.uint64))  # wraps mod 2**64
    windows = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.uint64) + np.uint64(1), n)
    out = np.empty(len(windows), dtype=np.uint64)
    for start in range(0, len(windows), 100_000):
        out[start : start + 100_000] = (windows[start : start + 100_000] * powers).sum(axis=1)
    return out


class NgramCounts:
    """How often each n-token piece occurs in a set of token arrays (by 64-bit hash)."""

    def __init__(self, arrays: list[np.ndarray], n: int):
        self.n = n
        hashes = np.concatenate([ngram_hashes(a, n) for a in arrays]) if arrays else np.zeros(0, np.uint64)
        self.keys, self.counts = np.unique(hashes, return_counts=True)

    def max_count(self, hashes: np.ndarray) -> int:
        """The largest occurrence count among the given pieces (0 when a piece never occurs)."""
        idx = np.searchsorted(self.keys, hashes).clip(max=len(self.keys) - 1)
        found = self.keys[idx] == hashes
        return int(np.where(found, self.counts[idx], 0).max())


@dataclass
class Corpus:
    """The tokenized documents, split into the stream (trained on) and held-out documents."""

    files: list[Path]
    docs: list[np.ndarray]  # token ids of every file
    stream_docs: list[int]  # file indices, in stream order
    heldout_docs: list[int]
    stream: np.ndarray  # the stream documents joined with EOS after each, cut to stream_tokens
    stream_doc_starts: np.ndarray  # where each stream document starts in `stream`


def split_corpus(cfg: TestbedConfig, files: list[Path], docs: list[np.ndarray], eos: int) -> Corpus:
    """Documents in a seeded random order; the first ones, up to `heldout_tokens`, are held out."""
    order = list(range(len(docs)))
    random.Random(cfg.seed).shuffle(order)
    heldout, total = [], 0
    while order and total < cfg.heldout_tokens:
        heldout.append(order.pop(0))
        total += len(docs[heldout[-1]])
    stream_docs, pieces, starts, n = [], [], [], 0
    for d in order:
        if cfg.stream_tokens is not None and n >= cfg.stream_tokens:
            break
        stream_docs.append(d)
        starts.append(n)
        pieces += [docs[d], np.array([eos], dtype=np.int64)]
        n += len(docs[d]) + 1
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    if cfg.stream_tokens is not None:
        if len(stream) < cfg.stream_tokens:
            raise ValueError(
                f"the stream documents hold {len(stream)} tokens, fewer than stream_tokens={cfg.stream_tokens}"
            )
        stream = stream[: cfg.stream_tokens]
    return Corpus(files, docs, stream_docs, heldout, stream, np.array(starts, dtype=np.int64))


def heldout_windows(cfg: TestbedConfig, corpus: Corpus, counts: NgramCounts, tokenizer) -> list[tuple[int, int]]:
    """(file, token offset) of the aligned paragraph-length windows of the held-out documents that
    pass the filters: >= 50% unique tokens, no license boilerplate, and no `dedup_ngram`-token piece
    that occurs anywhere else in the stream or the held-out documents."""
    L = cfg.seq_len
    out = []
    for d in corpus.heldout_docs:
        ids = corpus.docs[d]
        hashes = ngram_hashes(ids, cfg.dedup_ngram)
        for off in range(0, len(ids) - L + 1, L):
            if _keep_window(ids[off : off + L], hashes[off : off + L - cfg.dedup_ngram + 1], counts, tokenizer):
                out.append((d, off))
    return out


def _keep_window(window: np.ndarray, piece_hashes: np.ndarray, counts: NgramCounts, tokenizer) -> bool:
    if float(unique_fraction(torch.as_tensor(window)[None])[0]) < 0.5:
        return False
    if counts.max_count(piece_hashes) != 1:
        return False
    return not is_boilerplate(tokenizer.decode(window.tolist()))


@dataclass
class Plan:
    """Which held-out windows are planted (and how often) and which stay held out."""

    planted: dict[int, list[int]] = field(default_factory=dict)  # copies -> window indices
    heldout: list[int] = field(default_factory=list)


def plan_paragraphs(cfg: TestbedConfig, n_windows: int) -> Plan:
    need = sum(n for _, n in cfg.planted) + cfg.n_heldout
    if n_windows < need:
        raise ValueError(
            f"the held-out documents give {n_windows} usable paragraphs, the plan needs {need}: raise heldout_tokens"
        )
    perm = list(range(n_windows))
    random.Random(cfg.seed + 1).shuffle(perm)
    plan, pos = Plan(), 0
    for copies, n in cfg.planted:
        plan.planted[copies] = perm[pos : pos + n]
        pos += n
    plan.heldout = perm[pos : pos + cfg.n_heldout]
    return plan


def place_copies(offsets: np.ndarray, cfg: TestbedConfig, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Group copies into training sequences, keeping every copy's own offset.

    Copy b may follow copy a in one sequence when offsets[b] >= offsets[a] + seq_len + margin (room
    for real text between them). With `copies_per_sequence` 2, the copies that could lead are taken
    in random order and each is paired with a random one of the remaining copies that fit after it;
    the rest have a sequence each. Returns the copies of each sequence, in order of offset.
    """
    n = len(offsets)
    if cfg.copies_per_sequence == 1:
        return [(i,) for i in range(n)]
    gap = cfg.seq_len + cfg.margin
    lo, hi = cfg.offset_range
    avail = sorted((int(offsets[i]), i) for i in range(n) if offsets[i] >= lo + gap)
    used = np.zeros(n, dtype=bool)
    units = []
    for a in rng.permutation(np.flatnonzero(offsets <= hi - gap)).tolist():
        if used[a]:
            continue
        own = bisect.bisect_left(avail, (int(offsets[a]), a))
        if own < len(avail) and avail[own] == (int(offsets[a]), a):  # a copy that leads cannot also follow
            avail.pop(own)
        j = bisect.bisect_left(avail, (int(offsets[a]) + gap, -1))
        if j == len(avail):
            continue
        _, b = avail.pop(int(rng.integers(j, len(avail))))
        used[a] = used[b] = True
        units.append((a, b))
    units += [(i,) for i in range(n) if not used[i]]
    return units


def draw_placement(
    cfg: TestbedConfig, n_copies: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Every copy's start offset, drawn uniformly from `offset_range`, and the copies of each sequence."""
    lo, hi = cfg.offset_range
    offsets = rng.integers(lo, hi + 1, size=n_copies)
    return offsets, place_copies(offsets, cfg, rng)


@dataclass
class Layout:
    """The training sequences, in training order, and what each holds."""

    tokens: torch.Tensor  # [n_seq, context] int32
    copy_seq: np.ndarray  # per planted copy: its sequence, the planted paragraph, its offset
    copy_paragraph: np.ndarray
    copy_offset: np.ndarray
    piece_seq: np.ndarray  # per piece of stream text: its sequence, stream start, offset, length
    piece_stream: np.ndarray
    piece_offset: np.ndarray
    piece_len: np.ndarray


def lay_out(cfg: TestbedConfig, stream: np.ndarray, planted_tokens: np.ndarray, copy_paragraph: np.ndarray) -> Layout:
    """Cut the stream into full-context sequences and insert every copy at a uniformly random offset.

    Each copy's offset is drawn uniformly from `offset_range`, so every start offset is equally
    likely; copies are grouped into sequences by `place_copies`; the stream then flows, in order,
    around the copies, through sequences whose order is shuffled, and the leftover stream fills
    sequences of its own. The training order of the sequences is shuffled again.
    """
    rng = np.random.default_rng(cfg.seed + 2)
    L, ctx = cfg.seq_len, cfg.context
    offsets, units = draw_placement(cfg, len(copy_paragraph), rng)
    need = sum(ctx - L * len(u) for u in units)
    if need > len(stream):
        raise ValueError(
            f"the copies need {need} stream tokens around them, the stream has {len(stream)}: raise stream_tokens"
        )
    kinds: list[tuple[int, ...]] = units + [()] * ((len(stream) - need) // ctx)
    rng.shuffle(kinds)
    rows = np.empty((len(kinds), ctx), dtype=np.int32)
    cs, cp, co, ps, pst, po, pl = [], [], [], [], [], [], []
    pos = 0
    for s, unit in enumerate(kinds):
        cursor = 0
        for c in list(unit) + [None]:
            end = ctx if c is None else int(offsets[c])
            take = end - cursor
            rows[s, cursor:end] = stream[pos : pos + take]
            ps.append(s), pst.append(pos), po.append(cursor), pl.append(take)
            pos += take
            if c is not None:
                rows[s, end : end + L] = planted_tokens[copy_paragraph[c]]
                cs.append(s), cp.append(int(copy_paragraph[c])), co.append(end)
                cursor = end + L
    perm = rng.permutation(len(kinds))  # training order
    rank = np.empty_like(perm)
    rank[perm] = np.arange(len(perm))
    a = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
    return Layout(
        tokens=torch.from_numpy(rows[perm]),
        copy_seq=rank[a(cs)],
        copy_paragraph=a(cp),
        copy_offset=a(co),
        piece_seq=rank[a(ps)],
        piece_stream=a(pst),
        piece_offset=a(po),
        piece_len=a(pl),
    )


def once_windows(
    cfg: TestbedConfig, corpus: Corpus, layout: Layout, counts: NgramCounts, tokenizer, eos: int
) -> list[dict]:
    """Up to `n_eval_once` stream windows seen exactly once in training, as they occurred: each lies
    inside one piece of stream text of one training sequence (not across a copy, a sequence or a
    document boundary), passes the paragraph filters, and none of its `dedup_ngram`-token pieces
    occurs anywhere else. Pieces in a seeded random order, each cut into non-overlapping windows
    from a random first offset."""
    L, n = cfg.seq_len, cfg.dedup_ngram
    rng = np.random.default_rng(cfg.seed + 3)
    out = []
    for p in rng.permutation(len(layout.piece_len)):
        if layout.piece_len[p] < L:
            continue
        first = int(layout.piece_stream[p] + rng.integers(0, min(L, layout.piece_len[p] - L + 1)))
        for start in range(first, int(layout.piece_stream[p] + layout.piece_len[p]) - L + 1, L):
            if len(out) == cfg.n_eval_once:
                return out
            window = corpus.stream[start : start + L]
            if (window == eos).any() or not _keep_window(window, ngram_hashes(window, n), counts, tokenizer):
                continue
            d = int(np.searchsorted(corpus.stream_doc_starts, start, side="right") - 1)
            out.append(
                {
                    "file": corpus.stream_docs[d],
                    "offset": start - int(corpus.stream_doc_starts[d]),
                    "sequence": int(layout.piece_seq[p]),
                    "sequence_offset": int(layout.piece_offset[p] + start - layout.piece_stream[p]),
                    "tokens": window,
                }
            )
    return out


# ---- model and training ----


def make_model(cfg: TestbedConfig, tokenizer):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    hf_cfg = GPTNeoConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=cfg.context,
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


def _sdpa_attention(self, query, key, value, attention_mask=None):
    """GPT-Neo attention (unscaled scores, causal or sliding-window mask) through PyTorch's fused
    kernel: the same function as the eager `_attn`, faster to train. Weights are not returned."""
    q_len, k_len = query.size(-2), key.size(-2)
    mask = self.bias[:, :, k_len - q_len : k_len, :k_len]
    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=1.0), None


def use_fused_attention(model) -> None:
    """Route this model's attention layers (not the class) through `_sdpa_attention`."""
    for block in model.transformer.h:
        block.attn.attention._attn = types.MethodType(_sdpa_attention, block.attn.attention)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: TestbedConfig, model, sequences: torch.Tensor, work: Path, desc: str = "training testbed") -> dict:
    """One pass over all the sequences in batches (the last may be smaller), AdamW with a
    one-cycle schedule. Saves a checkpoint every `checkpoint_every` steps; an interrupted run
    resumes from it.
    """
    steps = -(-len(sequences) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=cfg.warmup)
    ckpt = work / "train_state.pt"
    start, losses, seconds = 0, [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, losses, seconds = state["step"], state["losses"], state["seconds"]
    use_fused_attention(model)
    model.train()
    t0 = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, unit="step")
    for step in bar:
        batch = sequences[step * cfg.batch_size : (step + 1) * cfg.batch_size].long()
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"training loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        elapsed = seconds + time.time() - t0
        bar.set_postfix(
            loss=f"{loss.item():.3f}", tok_s=f"{(step + 1 - start) * batch.numel() / (time.time() - t0):.0f}"
        )
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": step + 1,
                    "losses": losses,
                    "seconds": elapsed,
                },
                ckpt,
            )
    model.eval()
    state = torch.load(ckpt, weights_only=False)
    tail = losses[-50:]
    return {
        "steps": steps,
        "tokens": int(sequences.numel()),
        "final_loss": sum(tail) / len(tail),
        "loss_curve": losses[:: max(1, steps // 200)],
        "train_seconds": round(state["seconds"], 1),
    }


# ---- the whole build ----


def _tokenize(texts: list[str], tokenizer) -> list[np.ndarray]:
    encoded = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.array(e.ids, dtype=np.int64) for e in encoded]


def build_data(cfg: TestbedConfig, work: Path, texts: list[str], files: list[Path], tokenizer) -> dict:
    """Corpus split, evaluation paragraphs and the training layout; cached in the work folder."""
    cache = work / "data.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    eos = tokenizer.eos_token_id
    docs = _tokenize(texts, tokenizer)
    corpus = split_corpus(cfg, files, docs, eos)
    counts = NgramCounts([corpus.stream] + [docs[d] for d in corpus.heldout_docs], cfg.dedup_ngram)
    windows = heldout_windows(cfg, corpus, counts, tokenizer)
    plan = plan_paragraphs(cfg, len(windows))
    planted_tokens = np.stack(
        [docs[windows[i][0]][windows[i][1] : windows[i][1] + cfg.seq_len] for idx in plan.planted.values() for i in idx]
    )
    copies_of = [c for c, idx in plan.planted.items() for _ in idx]
    copy_paragraph = np.repeat(np.arange(len(copies_of)), copies_of)
    layout = lay_out(cfg, corpus.stream, planted_tokens, copy_paragraph)
    once = once_windows(cfg, corpus, layout, counts, tokenizer, eos)
    if cfg.left_out:
        leave_out(cfg, layout, corpus.stream, [f"planted-{c}x-{j}" for j, c in enumerate(copies_of)])
    unigram = np.bincount(corpus.stream, minlength=len(tokenizer))
    data = {"corpus": corpus, "windows": windows, "plan": plan, "layout": layout, "once": once, "unigram": unigram}
    _atomic_save(data, cache)
    return data


def leave_out(cfg: TestbedConfig, layout: Layout, stream: np.ndarray, planted_ids: list[str]) -> None:
    """Replace every copy of the `cfg.left_out` paragraphs in `layout.tokens`, in place, by a
    paragraph-length window of the stream at a random start (ordinary text the model also sees once
    elsewhere). Everything else (the sequences, their order, the other copies) stays as built, so a
    model trained on it differs from the testbed only by never having seen those paragraphs."""
    unknown = sorted(set(cfg.left_out) - set(planted_ids))
    if unknown:
        raise ValueError(f"left_out names paragraphs that are not planted: {unknown[:5]}")
    left = np.isin(layout.copy_paragraph, [planted_ids.index(i) for i in cfg.left_out])
    rng = np.random.default_rng(cfg.seed + 7)
    starts = rng.integers(0, len(stream) - cfg.seq_len, size=int(left.sum()))
    for seq, off, start in zip(layout.copy_seq[left], layout.copy_offset[left], starts):
        layout.tokens[seq, off : off + cfg.seq_len] = torch.from_numpy(
            stream[start : start + cfg.seq_len].astype(np.int32)
        )


def eval_paragraphs(cfg: TestbedConfig, data: dict) -> Paragraphs:
    """The shipped evaluation sets: planted (with copies), once (seen once) and heldout (never seen)."""
    corpus, windows, plan = data["corpus"], data["windows"], data["plan"]
    root = Path(sysconfig.get_paths()["stdlib"])
    rows, ids, counts, splits, sources, offsets, seqs, seq_offsets = [], [], [], [], [], [], [], []

    def add(pid, tokens, count, split, doc, offset, seq=None, seq_offset=None):
        rows.append(np.asarray(tokens)), ids.append(pid), counts.append(count), splits.append(split)
        sources.append(str(corpus.files[doc].relative_to(root))), offsets.append(int(offset))
        seqs.append(seq), seq_offsets.append(seq_offset)

    for copies, idx in plan.planted.items():
        for i in idx:
            d, off = windows[i]
            add(f"planted-{copies}x-{len(ids)}", corpus.docs[d][off : off + cfg.seq_len], copies, "planted", d, off)
    for j, w in enumerate(data["once"]):
        add(f"once-{j}", w["tokens"], 1, "once", w["file"], w["offset"], w["sequence"], w["sequence_offset"])
    for j, i in enumerate(plan.heldout):
        d, off = windows[i]
        add(f"heldout-{j}", corpus.docs[d][off : off + cfg.seq_len], 0, "heldout", d, off)
    meta = {"split": tuple(splits), "source": tuple(sources), "offset": tuple(offsets)}
    meta["sequence"], meta["sequence_offset"] = tuple(seqs), tuple(seq_offsets)
    return Paragraphs(torch.tensor(np.stack(rows), dtype=torch.long), cfg.prefix_len, tuple(ids), tuple(counts), meta)


def offset_summary(cfg: TestbedConfig, offsets: np.ndarray, n_bins: int = 12) -> dict:
    """Histogram of the copies' start offsets and a chi-square test against the uniform distribution."""
    from scipy.stats import chisquare

    lo, hi = cfg.offset_range
    observed = np.bincount(offsets - lo, minlength=hi - lo + 1)
    edges = np.linspace(lo, hi + 1, n_bins + 1).round().astype(int)
    return {
        "range": [lo, hi],
        "n_copies": int(len(offsets)),
        "bins": [
            [int(a), int(b) - 1, int(((offsets >= a) & (offsets < b)).sum())] for a, b in zip(edges[:-1], edges[1:])
        ],
        "min_count_per_offset": int(observed.min()),
        "max_count_per_offset": int(observed.max()),
        "chi2_uniform_p": float(chisquare(observed).pvalue),
    }


def build_testbed(
    out_dir: str | Path, cfg: TestbedConfig = TestbedConfig(), work_dir: str | Path | None = None
) -> dict:
    """Build (or resume building) the testbed into `out_dir`; returns its metadata."""
    from interp.metrics import count_groups, score_paragraphs
    from interp.models import load_model
    from interp.position import position_robustness

    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir else out_dir.parent / f"_build_{out_dir.name}"
    work.mkdir(parents=True, exist_ok=True)
    t_start, load_start = time.time(), os.getloadavg()

    files = stdlib_files(cfg.max_files)
    texts, corpus_hash = read_corpus(files)
    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = train_tokenizer(texts, cfg.vocab_size, tok_dir)
    data = build_data(cfg, work, texts, files, tokenizer)
    layout: Layout = data["layout"]

    model = make_model(cfg, tokenizer)
    training = train(cfg, model, layout.tokens, work)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.to({"float16": torch.float16, "float32": torch.float32}[cfg.storage_dtype])
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    eval_set = eval_paragraphs(cfg, data)
    eval_set.save_jsonl(out_dir / "paragraphs.jsonl")

    # Every number below is measured on the shipped weights, loaded as users load them.
    hooked = load_model(str(out_dir), device="cpu")
    scores = score_paragraphs(hooked, eval_set)
    by_count: dict[str, dict] = {}
    for c, sel in count_groups(eval_set.counts):
        em = scores.em[sel].float()
        by_count[str(c)] = {
            "n": int(sel.sum()),
            "n_memorized": int((em == cfg.continuation_len).sum()),
            "fraction_memorized": float((em == cfg.continuation_len).float().mean()),
            "mean_em": float(em.mean()),
            "fraction_em_le_10": float((em <= 10).float().mean()),
        }
    splits = eval_set.meta["split"]
    planted = eval_set.select([i for i, s in enumerate(splits) if s == "planted"])
    filler = eval_set.select([i for i, s in enumerate(splits) if s == "heldout"]).tokens
    robustness = position_robustness(hooked, planted, filler=filler, ks=cfg.robustness_ks, seed=cfg.seed)
    once_mask = torch.tensor([s == "once" for s in splits])
    n_planted_tokens = int(len(layout.copy_offset) * cfg.seq_len)
    n_train = int(training["tokens"])

    root = Path(sysconfig.get_paths()["stdlib"])
    metadata = {
        "name": "interp testbed",
        "version": 2,
        "config": asdict(cfg),
        "corpus": {
            "source": "Python standard library .py files outside test folders",
            "python_version": platform.python_version(),
            "python_implementation": sys.implementation.name,
            "n_files": len(files),
            "sha256": corpus_hash,
            "n_stream_files": len(data["corpus"].stream_docs),
            "n_heldout_files": len(data["corpus"].heldout_docs),
            "heldout_files": [str(files[d].relative_to(root)) for d in data["corpus"].heldout_docs],
            "n_heldout_windows_after_filters": len(data["windows"]),
            "filters": {
                "min_unique_fraction": 0.5,
                "unique_ngram": cfg.dedup_ngram,
                "boilerplate_patterns": list(BOILERPLATE_PATTERNS),
            },
        },
        "data": {
            "stream_tokens": int(len(data["corpus"].stream)),
            "stream_tokens_trained": n_train - n_planted_tokens,
            "planted_tokens": n_planted_tokens,
            "planted_share": n_planted_tokens / n_train,
            "sequences": int(len(layout.tokens)),
            "sequences_with_copies": {
                str(k): int(v)
                for k, v in zip(
                    *np.unique(np.bincount(layout.copy_seq, minlength=len(layout.tokens)), return_counts=True)
                )
            },
            "offsets": offset_summary(cfg, layout.copy_offset),
        },
        "training": {
            **training,
            "wall_seconds": round(time.time() - t_start, 1),
            "load_average_start": list(load_start),
            "load_average_end": list(os.getloadavg()),
        },
        "planted": {
            str(c): [
                eval_set.ids[i] for i, (cc, s) in enumerate(zip(eval_set.counts, splits)) if s == "planted" and cc == c
            ]
            for c, _ in cfg.planted
        },
        "unigram_counts": data["unigram"].tolist(),
        "memorization_by_count": by_count,
        "n_mem": int((scores.em == cfg.continuation_len).sum()),
        "n_once_em_le_10": int((scores.em[once_mask] <= 10).sum()),
        "fraction_once_em_le_10": float((scores.em[once_mask] <= 10).float().mean()),
        "position_robustness": robustness.to_json(),
    }
    tmp = out_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(metadata))
    tmp.replace(out_dir / "metadata.json")
    return metadata


# ---- the reference: the testbed retrained without some planted paragraphs ----

# All 16 paragraphs planted 128 times and half of those planted 256 times: every one is recited
# word for word by the testbed, and none is ever seen by the reference model.
REFERENCE_LEFT_OUT: tuple[str, ...] = tuple(f"planted-128x-{i}" for i in range(48, 64)) + tuple(
    f"planted-256x-{i}" for i in range(32, 40)
)


def build_reference(
    out_dir: str | Path | None = None,
    testbed_dir: str | Path | None = None,
    left_out: tuple[str, ...] = REFERENCE_LEFT_OUT,
    work_dir: str | Path | None = None,
) -> dict:
    """Retrain the testbed with `left_out` paragraphs kept out of its training stream (`leave_out`):
    the same config, seed, tokenizer, sequences, order and number of steps. The model that never
    knew those paragraphs, against which an unlearning audit's verdicts are checked."""
    import shutil
    from dataclasses import replace

    from interp.models import TESTBED_DIR, TESTBED_REFERENCE_DIR
    from interp.testbed import testbed_paragraphs

    testbed_dir = Path(testbed_dir or TESTBED_DIR)
    out_dir = Path(out_dir or TESTBED_REFERENCE_DIR)
    work = Path(work_dir) if work_dir else out_dir.parent / f"_build_{out_dir.name}"
    tok = work / "tokenizer"
    if not (tok / "tokenizer.json").exists():
        tok.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(testbed_dir / name, tok / name)
    cfg = replace(testbed_config(testbed_dir), left_out=tuple(left_out))
    meta = build_testbed(out_dir, cfg, work)
    shipped = testbed_paragraphs(path=testbed_dir)
    if not torch.equal(testbed_paragraphs(path=out_dir).tokens, shipped.tokens):
        raise RuntimeError("the reference's evaluation paragraphs differ from the testbed's: not the same data")
    meta["name"] = "interp testbed reference"
    meta["reference_of"] = {
        "path": testbed_dir.name,
        "left_out": list(left_out),
        "how": "interp.testbed.build.build_reference: the testbed's config, seed, tokenizer, sequences, order and "
        "steps; every copy of a left-out paragraph replaced by a random window of the stream (leave_out)",
    }
    tmp = out_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(out_dir / "metadata.json")
    return meta


# ---- the companion: a small model of the same data and tokenizer ----


@dataclass(frozen=True)
class CompanionShape:
    """What the companion changes from the testbed: its size, learning rate, and the share of the
    testbed's training sequences it sees (the first ones in the testbed's shuffled training order,
    so every planted paragraph keeps about that share of its copies): an eighth keeps training
    within ~15 minutes on two busy CPU cores."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 3e-3
    share: float = 0.125

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}")


def testbed_config(testbed_dir: str | Path) -> TestbedConfig:
    """The TestbedConfig saved in a testbed's metadata (lists back to tuples)."""
    saved = json.loads((Path(testbed_dir) / "metadata.json").read_text())["config"]
    saved["planted"] = tuple(tuple(p) for p in saved["planted"])
    saved["robustness_ks"] = tuple(saved["robustness_ks"])
    saved["left_out"] = tuple(saved.get("left_out", ()))
    return TestbedConfig(**saved)


def build_companion(
    out_dir: str | Path | None = None,
    testbed_dir: str | Path | None = None,
    shape: CompanionShape = CompanionShape(),
    work_dir: str | Path | None = None,
) -> dict:
    """Train a small model beside the testbed: the testbed's tokenizer, corpus, planted copies and
    training sequences (rebuilt from the same config and checked against the shipped paragraphs),
    the same training loop, a smaller shape. Proxy-tuning (decoding-time unlearning) needs such a
    companion sharing the base's vocabulary. Returns its metadata (also saved as metadata.json)."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from interp.metrics import count_groups, score_paragraphs
    from interp.models import TESTBED_COMPANION_DIR, TESTBED_DIR, load_model
    from interp.testbed import testbed_metadata, testbed_paragraphs

    testbed_dir = Path(testbed_dir or TESTBED_DIR)
    out_dir = Path(out_dir or TESTBED_COMPANION_DIR)
    work = Path(work_dir) if work_dir else out_dir.parent / f"_build_{out_dir.name}"
    work.mkdir(parents=True, exist_ok=True)
    t_start, load_start = time.time(), os.getloadavg()
    base_meta = testbed_metadata(testbed_dir)
    cfg = replace(testbed_config(testbed_dir), **{k: v for k, v in asdict(shape).items() if k != "share"})

    files = stdlib_files(cfg.max_files)
    texts, corpus_hash = read_corpus(files)
    if corpus_hash != base_meta["corpus"]["sha256"]:
        raise RuntimeError(
            f"this Python's standard library (hash {corpus_hash[:12]}) is not the testbed's corpus "
            f"({base_meta['corpus']['sha256'][:12]}, Python {base_meta['corpus']['python_version']})"
        )
    tokenizer = AutoTokenizer.from_pretrained(testbed_dir)
    data = build_data(cfg, work, texts, files, tokenizer)
    shipped = testbed_paragraphs(path=testbed_dir)
    if not torch.equal(eval_paragraphs(cfg, data).tokens, shipped.tokens):
        raise RuntimeError("the rebuilt evaluation paragraphs differ from the testbed's: not the same data")

    model = make_model(cfg, tokenizer)
    sequences = data["layout"].tokens
    sequences = sequences[: round(shape.share * len(sequences))]
    training = train(cfg, model, sequences, work, desc="training companion")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to({"float16": torch.float16, "float32": torch.float32}[cfg.storage_dtype])
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    hooked = load_model(str(out_dir), device="cpu")
    scores = score_paragraphs(hooked, shipped)
    by_count = {}
    for c, sel in count_groups(shipped.counts):
        em = scores.em[sel].float()
        by_count[str(c)] = {
            "n": len(em),
            "n_memorized": int((em == cfg.continuation_len).sum()),
            "mean_em": float(em.mean()),
        }
    metadata = {
        "name": "interp testbed companion",
        "companion_of": {"path": Path(testbed_dir).name, "corpus_sha256": corpus_hash, "name": base_meta["name"]},
        "how": (
            "interp.testbed.build.build_companion: the testbed's tokenizer, data and training loop "
            "(interp.testbed.build.train), on the first `share` of its training sequences, with the shape below"
        ),
        "shape": asdict(shape),
        "config": asdict(cfg),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            **training,
            "wall_seconds": round(time.time() - t_start, 1),
            "load_average_start": list(load_start),
            "load_average_end": list(os.getloadavg()),
            "threads": torch.get_num_threads(),
        },
        "em": dict(zip(shipped.ids, scores.em.tolist())),
        "memorization_by_count": by_count,
    }
    tmp = out_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(metadata))
    tmp.replace(out_dir / "metadata.json")
    return metadata
