"""Is forgotten text really gone? Put parts of the ORIGINAL model back into the unlearned one.

Following Hong et al. 2024: for every layer l, a window of `width` layers [l - width//2,
l + width//2] clipped at the edges is restored (windows are centred, so widths are odd; the default
scales Hong et al.'s 5 of 32 layers to the model's depth, see `default_window`), in four experiments:

- "coefficients": the original model's MLP activations (blocks.L.mlp.hook_post, the c_i of
  out = sum_i c_i v_i) patched into the unlearned model's forward on the same input, all positions;
- "attention": the original attention outputs (blocks.L.hook_attn_out) patched in;
- "both": coefficients and attention outputs together;
- "values": the original W_out weights (the value vectors v_i) copied back.

Scores per experiment and window: EM and NLL of the true continuation, and the Knowledge Recovery
Score KRS = 1 - loss(restored) / loss(unlearned), loss = mean squared difference from the original
model's logits over the continuation positions. As in Hong et al.'s code, KRS is computed per
paragraph and averaged (`krs`); `krs_ratio_of_means` = 1 - mean loss(restored) / mean loss(unlearned)
is kept as a named alternative (it weights paragraphs by how far unlearning moved them). The three activation experiments for every window
run as ONE batched forward (rows = experiment x window x paragraph, each hook patching the rows
whose window covers its layer); value vectors need one forward per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.backend import Model, act_name, capture, copy_model, hooks_on, weight
from interp.data import BATCH_SIZE, Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.metrics import continuation_log_probs, em_from_hits
from interp.options import EXPERIMENTS, RESTORE, RestoreOptions  # noqa: F401 (public names kept here)
from interp.unlearning import Hook

_PATCHED = {"coefficients": ("post",), "attention": ("attn_out",), "both": ("post", "attn_out")}


PAPER_WINDOW = (5, 32)  # Hong et al.: 5 of LLaMA2-7B's 32 layers


def default_window(n_layers: int) -> int:
    """The odd width closest to Hong et al.'s 5/32 of the depth (at least 1): 5 for 32 layers, 1 for 4-12."""
    share = PAPER_WINDOW[0] / PAPER_WINDOW[1] * n_layers
    return max(1, 2 * round((share - 1) / 2) + 1)


def layer_windows(n_layers: int, width: int = 5) -> list[tuple[int, int]]:
    """[l - width//2, l + width//2] clipped to the model, for every layer l (inclusive bounds).

    Windows are centred on their layer, so `width` must be odd."""
    if width < 1:
        raise UserError(f"the restoration window must be at least 1 layer wide, got {width}")
    if width % 2 == 0:
        raise UserError(
            f"restoration windows are centred on a layer, so their width must be odd (1, 3, 5, ...); got {width}"
        )
    half = width // 2
    return [(max(0, l - half), min(n_layers - 1, l + half)) for l in range(n_layers)]


@dataclass(frozen=True)
class RestorationResult(Displayed):
    """Per paragraph scores of the original, the unlearned and every restored model."""

    _view = "interp.views.unlearning:figure_restoration"

    ids: tuple[str, ...]
    experiments: tuple[str, ...]
    windows: tuple[tuple[int, int], ...]  # one per layer l, the layers restored for "layer l"
    em_original: Int[Tensor, "n"]
    em_edited: Int[Tensor, "n"]
    em_restored: Int[Tensor, "experiment layer n"]
    nll_original: Float[Tensor, "n"]
    nll_edited: Float[Tensor, "n"]
    nll_restored: Float[Tensor, "experiment layer n"]
    logit_loss_edited: Float[Tensor, "n"]  # mean squared logit difference from the original
    logit_loss_restored: Float[Tensor, "experiment layer n"]

    @property
    def em_recovered(self) -> Float[Tensor, "experiment layer"]:
        """Fraction of the forgotten EM brought back: (restored - unlearned) / (original - unlearned), on means."""
        lost = self.em_original.float().mean() - self.em_edited.float().mean()
        return (self.em_restored.float().mean(-1) - self.em_edited.float().mean()) / lost

    @property
    def nll_recovered(self) -> Float[Tensor, "experiment layer"]:
        """Fraction of the NLL increase undone: (unlearned - restored) / (unlearned - original), on means."""
        lost = self.nll_edited.mean() - self.nll_original.mean()
        return (self.nll_edited.mean() - self.nll_restored.mean(-1)) / lost

    @property
    def krs_per_paragraph(self) -> Float[Tensor, "experiment layer n"]:
        """1 - loss(restored) / loss(unlearned) of each paragraph (nan where unlearning left its logits unchanged)."""
        edited = self.logit_loss_edited.where(self.logit_loss_edited > 0, torch.tensor(float("nan")))
        return 1 - self.logit_loss_restored / edited

    @property
    def krs(self) -> Float[Tensor, "experiment layer"]:
        """Knowledge Recovery Score, computed per paragraph and averaged (Hong et al.'s code)."""
        return self.krs_per_paragraph.nanmean(-1)

    @property
    def krs_ratio_of_means(self) -> Float[Tensor, "experiment layer"]:
        """1 - mean loss(restored) / mean loss(unlearned): paragraphs weighted by how far unlearning moved them."""
        return 1 - self.logit_loss_restored.mean(-1) / self.logit_loss_edited.mean()

    @classmethod
    def concat(cls, results: Sequence[RestorationResult]) -> RestorationResult:
        """One result over the paragraphs of several (e.g. one per target, each restoring its own unlearning run):
        per-paragraph scores side by side, so every fraction and KRS is then taken over all of them."""
        if not results:
            raise UserError("no restoration results to combine")
        first = results[0]
        if any(r.experiments != first.experiments or r.windows != first.windows for r in results):
            raise UserError("restoration results with different experiments or windows cannot be combined")
        fields = [f for f in cls.__dataclass_fields__ if f not in ("ids", "experiments", "windows")]
        joined = {f: torch.cat([getattr(r, f) for r in results], dim=-1) for f in fields}
        return cls(
            ids=tuple(i for r in results for i in r.ids), experiments=first.experiments, windows=first.windows, **joined
        )

    def to_json(self) -> dict:
        return {
            "ids": list(self.ids),
            "experiments": list(self.experiments),
            "windows": [list(w) for w in self.windows],
            "em_original": self.em_original,
            "em_edited": self.em_edited,
            "nll_original": self.nll_original,
            "nll_edited": self.nll_edited,
            "em_restored": self.em_restored,
            "nll_restored": self.nll_restored,
            "em_recovered": self.em_recovered,
            "nll_recovered": self.nll_recovered,
            "krs": self.krs,
            "krs_ratio_of_means": self.krs_ratio_of_means,
            "krs_averaging": "per paragraph, then the mean",
        }


def _scores(
    logits: Float[Tensor, "rows seq vocab"],
    tokens: Int[Tensor, "n seq"],
    reference: Float[Tensor, "n cont vocab"],
    p: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """EM, NLL and squared logit distance to `reference` per row; rows = copies of the n paragraphs."""
    n, cont = reference.shape[0], reference.shape[1]
    logits = logits.float()
    tokens = tokens.repeat(logits.shape[0] // n, 1)
    em = em_from_hits(logits[:, p - 1 : -1].argmax(-1) == tokens[:, p:])
    nll = -continuation_log_probs(logits, tokens, p).mean(1)
    diff = logits[:, p - 1 : -1].view(-1, n, cont, logits.shape[-1]) - reference
    return em.cpu(), nll.cpu(), diff.pow(2).mean((-1, -2)).flatten().cpu()


def _patch_hook(cached: Tensor, rows: Tensor, n: int):
    """Overwrite the activation of the given rows (row r = config r // n, paragraph r % n) by the cache."""

    def hook(act: Tensor, hook) -> Tensor:
        act[rows] = cached[rows % n].to(act.dtype)
        return act

    return hook


@torch.no_grad()
def restoration(
    original: Model,
    edited: Model,
    targets: Paragraphs,
    *,
    width: int | None = RESTORE.width,
    experiments: Sequence[str] = RESTORE.experiments,
    edited_hooks: Sequence[Hook] = (),
    batch_size: int = BATCH_SIZE,
) -> RestorationResult:
    """Restore each experiment's part of `original` into `edited`, window by window; score the forgotten `targets`.

    `edited_hooks` are forward hooks that are part of the unlearned model (a ReFT intervention;
    then `edited` may be `original` itself). Neither model is changed."""
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown or not experiments:
        raise UserError(f"unknown restoration experiments {unknown}: use some of {', '.join(EXPERIMENTS)}")
    if original.cfg.n_layers != edited.cfg.n_layers or original.cfg.d_mlp != edited.cfg.d_mlp:
        raise UserError("the original and the edited model have different shapes: they are not the same model")
    if len(targets) == 0:
        raise UserError("no paragraphs to restore: pass the forgotten ones")
    n_layers, p = original.cfg.n_layers, targets.prefix_len
    windows = layer_windows(n_layers, default_window(n_layers) if width is None else width)
    patched = [(e, w) for e in experiments if e in _PATCHED for w in windows]
    names = {kind: [act_name(kind, l) for l in range(n_layers)] for kind in ("post", "attn_out")}
    values_model = copy_model(edited) if "values" in experiments else None
    chunk = max(1, batch_size // max(1, len(patched)))
    device = original.cfg.device
    scored = ("em_original", "nll_original", "em_edited", "nll_edited", "logit_loss_edited")
    restored = ("em_restored", "nll_restored", "logit_loss_restored")
    out: dict[str, list] = {k: [] for k in scored + restored}  # RestorationResult's fields, chunk by chunk
    for start in range(0, len(targets), chunk):
        tokens = targets.tokens[start : start + chunk].to(device)
        n = tokens.shape[0]
        logits_o, cache = capture(original, tokens, names["post"] + names["attn_out"])
        reference = logits_o[:, p - 1 : -1].float()
        em_o, nll_o, _ = _scores(logits_o, tokens, reference, p)
        with hooks_on(edited, edited_hooks):
            em_e, nll_e, loss_e = _scores(edited(tokens), tokens, reference, p)
        rows = {e: [] for e in experiments}  # experiment -> per layer (em, nll, loss) of this chunk
        if patched:
            hooks = []
            for kind in ("post", "attn_out"):
                for l in range(n_layers):
                    sel = torch.tensor(
                        [kind in _PATCHED[e] and lo <= l <= hi for e, (lo, hi) in patched], device=device
                    )
                    idx = sel.repeat_interleave(n).nonzero().flatten()
                    if idx.numel():
                        hooks.append((names[kind][l], _patch_hook(cache[names[kind][l]], idx, n)))
            reps = len(patched)
            with hooks_on(edited, list(edited_hooks) + hooks):
                em_r, nll_r, loss_r = _scores(edited(tokens.repeat(reps, 1)), tokens, reference, p)
            for i, (e, _) in enumerate(patched):
                rows[e].append((em_r[i * n : (i + 1) * n], nll_r[i * n : (i + 1) * n], loss_r[i * n : (i + 1) * n]))
        if values_model is not None:
            for lo, hi in windows:
                for l in range(lo, hi + 1):
                    weight(values_model, l, "W_out").copy_(weight(original, l, "W_out"))
                with hooks_on(values_model, edited_hooks):
                    rows["values"].append(_scores(values_model(tokens), tokens, reference, p))
                for l in range(lo, hi + 1):
                    weight(values_model, l, "W_out").copy_(weight(edited, l, "W_out"))
        for key, value in zip(scored, (em_o, nll_o, em_e, nll_e, loss_e)):
            out[key].append(value)
        for j, key in enumerate(restored):
            out[key].append(torch.stack([torch.stack([layer[j] for layer in rows[e]]) for e in experiments]))
    return RestorationResult(
        ids=targets.ids,
        experiments=tuple(experiments),
        windows=tuple(windows),
        **{k: torch.cat(v, dim=-1) for k, v in out.items()},
    )
