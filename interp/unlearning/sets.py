"""The paragraphs one unlearning table runs on, chosen by one rule for `interp unlearn` and the report.

Given the targets, the other MEM paragraphs, the NMEM paragraphs (in order) and the never-seen ones (a
'heldout' split, when the set has one), `unlearning_sets` takes: each run's retain set from the first NMEM
paragraphs; the collateral-damage probes (at most `probe` other MEM, the next `probe` NMEM, `probe` never-seen
paragraphs for perplexity, or NMEM paragraphs nothing else uses when there are none); and, for the relearning
attack's control (b), one never-seen paragraph per target. `UnlearningSets.table_arguments()` hands them to
`unlearning_table` whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.backend import Model
from interp.data import Paragraphs
from interp.errors import UserError
from interp.perturbation import perturbed_batch_size, prefix_perturbation
from interp.unlearning.evaluation import Probe, probe_sets


@dataclass(frozen=True)
class UnlearningSets:
    """Targets, retain sets (target i with retain[i*k:(i+1)*k]), probes, and the never-seen paragraphs of
    relearning control (b) (None without a 'heldout' split or without an attack); edit targets where an edit
    row needs them."""

    targets: Paragraphs
    retain: Paragraphs
    retain_per_run: int
    probe: Probe
    edit_targets: Paragraphs | None = None
    never_seen: Paragraphs | None = None
    never_seen_edit: Paragraphs | None = None

    def table_arguments(self) -> dict:
        """The keyword arguments of `unlearning_table` these sets fill."""
        return dict(
            targets=self.targets,
            retain=self.retain,
            probe=self.probe,
            edit_targets=self.edit_targets,
            retain_per_run=self.retain_per_run,
            heldout=self.never_seen,
            heldout_edit_targets=self.never_seen_edit,
        )


def unlearning_sets(
    model: Model,
    targets: Paragraphs,
    mem: Paragraphs,
    nmem: Paragraphs,
    never_seen: Paragraphs | None,
    *,
    retain_per_run: int,
    probe: int,
    batch_size: int,
    relearn: bool,
    edit: bool,
    perturb_samples: int,
    seed: int,
    edit_targets: Paragraphs | None = None,
) -> UnlearningSets:
    """The sets of one table. `mem`: MEM paragraphs other than the targets; `nmem`: NMEM paragraphs, the retain
    sets first; `never_seen`: paragraphs the model was never trained on (None or empty: none). `edit`: an edit
    row will run, so edit targets are needed: `edit_targets` when given (aligned with `targets`), else found by
    prefix perturbation (`perturb_samples`, `seed`), as are the never-seen paragraphs' for control (b).
    `relearn`: a relearning attack will run, so control (b) gets its never-seen paragraphs."""
    need = len(targets) * retain_per_run
    if len(nmem) < need + 1:
        raise UserError(
            f"{len(nmem)} NMEM paragraphs for {len(targets)} run(s): need {need} to retain ({retain_per_run} per "
            "run) and some to probe"
        )
    never_seen = never_seen if never_seen is not None and len(never_seen) else None
    probe_nmem = nmem.select(range(need, min(len(nmem), need + probe)))
    unused = range(need + len(probe_nmem), min(len(nmem), need + len(probe_nmem) + probe))
    perplexity = (
        never_seen.select(range(min(probe, len(never_seen))))
        if never_seen is not None
        else nmem.select(unused)
        if len(unused)
        else probe_nmem
    )
    probes = probe_sets(model, mem.select(range(min(probe, len(mem)))), probe_nmem, perplexity, batch_size=batch_size)
    control = (
        never_seen.select(range(min(len(targets), len(never_seen)))) if never_seen is not None and relearn else None
    )

    def new_continuations(text: Paragraphs) -> Paragraphs:
        return prefix_perturbation(
            model,
            text,
            samples_per_position=perturb_samples,
            seed=seed,
            batch_size=perturbed_batch_size(batch_size),
        ).editing_targets

    if edit and edit_targets is None:
        edit_targets = new_continuations(targets)
    return UnlearningSets(
        targets=targets,
        retain=nmem.select(range(need)),
        retain_per_run=retain_per_run,
        probe=probes,
        edit_targets=edit_targets,
        never_seen=control,
        never_seen_edit=new_continuations(control) if edit and control is not None else None,
    )
