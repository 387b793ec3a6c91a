"""The report runner: cached, resumable analysis steps -> report.html, results.json, PNG / SVG figures.

A step is a name, an analysis (a function of the model, the paragraphs, the options and the
results of the steps it depends on) and a view that turns its result into a report section.
Each step's result is cached on disk under a key made of the model's weights, the paragraph
tokens, the options the step reads, the results of the steps it depends on (their fingerprints)
and the toolkit's own source, so an interrupted report resumes from the steps it finished and a
changed input redoes exactly what it touches: a second report with one option changed reuses every
step that does not read it. A step sees only what it declares: reading an option or an earlier
result it does not declare raises `UndeclaredInput` (its cache key would miss it). Outputs are assembled in a staging folder and moved into place only
when all of them are complete: a failed or interrupted run never replaces a good report.

The report's own steps are `interp.report.steps` (one module each); their sections are `interp.views.sections`;
the types both share (`Step`, `StepInputs`, `Bundle`, `Skipped`) are `interp.report.types`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.backend import Model, architecture
from interp.cost import Work, count_work, matmul_gflops
from interp.data import Paragraphs
from interp.errors import UserError
from interp.fingerprint import weights_fingerprint
from interp.io import to_jsonable, write_json, write_text_atomic
from interp.models import model_name, model_source
from interp.report.options import ReportOptions
from interp.report.steps import default_steps
from interp.report.types import Bundle, Skipped, Step, StepInputs, result_json  # noqa: F401 (Bundle: older imports)
from interp.views.export import FIGURE_HASHES, save_figures
from interp.views.report_html import Section, report_html
from interp.views.sections.cost import cost_section

PACKAGE = Path(__file__).resolve().parent.parent
"""The interp package's folder: its analysis source is part of every cache key."""
CACHE_FORMAT = 2
UNKEYED_OPTIONS = ("progress",)
"""Options every step may read without declaring them: they change no result (progress bars)."""


class UndeclaredInput(RuntimeError):
    """A step read an option or an earlier step's result that its `Step` does not declare."""


class DeclaredOptions:
    """A step's view of the `ReportOptions`: the fields it declares (and `UNKEYED_OPTIONS`), nothing else."""

    def __init__(self, options: ReportOptions, declared: Sequence[str], step: str):
        self._options, self._declared, self._step = options, frozenset(declared) | set(UNKEYED_OPTIONS), step

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._declared:
            raise UndeclaredInput(
                f"step {self._step!r} reads option {name!r}, which it does not declare: add it to its Step(options=...)"
            )
        return getattr(self._options, name)


class DeclaredResults(Mapping):
    """A step's view of the earlier results: the steps it declares in `depends`, nothing else."""

    def __init__(self, results: Mapping[str, Any], declared: Sequence[str], step: str):
        self._results, self._declared, self._step = results, tuple(declared), step

    def __getitem__(self, name: str) -> Any:
        if name not in self._declared:
            raise UndeclaredInput(
                f"step {self._step!r} reads the result of {name!r}, which it does not declare: add it to its "
                "Step(depends=...)"
            )
        return self._results[name]

    def __iter__(self):
        return (n for n in self._declared if n in self._results)

    def __len__(self) -> int:
        return sum(1 for _ in self)


# ---- fingerprints: what a cached result depends on ----


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def model_fingerprint(model: Model, weights: str | None = None) -> str:
    """Hash of the model's config and its weights' hash (`weights_fingerprint`, or `weights` where the caller
    already has it): two models share it only if equal. The config includes where the tokenizer was loaded
    from, so the same checkpoint in two folders hashes apart (the step cache's key, which may miss but never
    hits wrongly)."""
    h = hashlib.sha256(json.dumps(model.cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update((weights or weights_fingerprint(model)).encode())
    return h.hexdigest()


def paragraphs_fingerprint(paragraphs: Paragraphs) -> str:
    """Hash of the paragraph tokens, prefix length, ids and repeat counts."""
    h = hashlib.sha256(paragraphs.tokens.cpu().contiguous().numpy().tobytes())
    h.update(
        json.dumps([paragraphs.prefix_len, paragraphs.ids, paragraphs.counts, paragraphs.meta.get("split")]).encode()
    )
    return h.hexdigest()


def fingerprinted_sources() -> list[Path]:
    """The toolkit's analysis source files, relative to the package: views, commands and the testbed builder excluded."""
    root = PACKAGE
    return [
        path.relative_to(root)
        for path in sorted(root.rglob("*.py"))
        if path.relative_to(root).parts[0] not in ("views", "commands", "testbed")
    ]


def code_fingerprint() -> str:
    """Hash of the toolkit's analysis source (`fingerprinted_sources`): new code, new results."""
    root = PACKAGE
    h = hashlib.sha256()
    for rel in fingerprinted_sources():
        h.update(str(rel).encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()


class StepCache:
    """Step results pickled under `folder`, one file per key, written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str, key: str) -> Path:
        return self.folder / f"{name}-{key[:24]}.pkl"

    def load(self, name: str, key: str) -> tuple[bool, Any]:
        path = self.path(name, key)
        if not path.exists():
            return False, None
        try:
            with path.open("rb") as fh:
                return True, pickle.load(fh)
        except Exception as exc:  # an unreadable entry (older code, torn disk) is recomputed
            warnings.warn(f"ignoring unreadable cached result {path.name}: {exc}", stacklevel=2)
            return False, None

    def store(self, name: str, key: str, result: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(name, key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            tmp.unlink(missing_ok=True)
            warnings.warn(f"step {name!r}: result not cached ({exc})", stacklevel=2)


class _TensorBytesPickler(pickle.Pickler):
    """Writes tensors as (dtype, shape, value bytes) tuples, so equal results give equal bytes: for hashing
    (`result_fingerprint`), not for loading back."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().to("cpu").contiguous()
            data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return tuple, ((str(t.dtype), tuple(t.shape), data),)
        return NotImplemented


def result_fingerprint(result: Any) -> str:
    """Hash of a step's result, from its values (tensors by their bytes): what a dependent step's key holds.
    A result that cannot be pickled (or refers to itself) is hashed by its JSON. (A set's order follows Python's string hashing, so a
    result holding one may hash differently in another process: a cache miss, never a wrong hit.)"""
    buffer = io.BytesIO()
    pickler = _TensorBytesPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True  # no memo: which equal objects happen to be one object (a cached copy differs) is not hashed
    try:
        pickler.dump(result)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError):
        return _sha(json.dumps(result_json(result), sort_keys=True, default=str))
    return _sha(buffer.getvalue())


def step_key(step: Step, base: Mapping[str, str], options: ReportOptions, depends: Mapping[str, str]) -> str:
    """Cache key of one step: base fingerprints + the options it reads + the fingerprints of the results it reads."""
    opts = options.to_dict()
    payload = {
        "format": CACHE_FORMAT,
        "step": step.name,
        **base,
        "options": {k: _with_file_hash(opts[k]) for k in step.options},
        "depends": {d: depends[d] for d in step.depends},
    }
    return _sha(json.dumps(payload, sort_keys=True, default=str))


def _with_file_hash(value: Any) -> Any:
    """An option naming a file (a paragraph file, a saved validation) keys by the file's bytes too: an edited
    file is a cache miss, never a stale hit."""
    if isinstance(value, str) and value and Path(value).is_file():
        return {"path": value, "sha256": _sha(Path(value).read_bytes())}
    return value


def step_keys(steps: Sequence[Step], base: Mapping[str, str], options: ReportOptions) -> dict[str, str]:
    """Cache key of each step before any has run, each dependency standing in by its own key (a key changes
    whenever its step's inputs do; `run_report` keys by the dependencies' results instead)."""
    keys: dict[str, str] = {}
    for step in steps:
        keys[step.name] = step_key(step, base, options, {d: keys[d] for d in step.depends})
    return keys


# ---- running it ----


@dataclass
class ReportRun:
    """What `run_report` did: where the outputs are, and per step the seconds and cache hits."""

    out_dir: Path
    html: Path
    results_json: Path
    figures: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    work: dict[str, Work] = field(default_factory=dict)  # per step: positions and FLOPs counted as it ran
    peak_gflops: float | None = None  # float32 matmul rate timed at the end of the run

    def cost(self) -> dict[str, dict]:
        """Per step: seconds, the work it did and its rate as a fraction of the matmul peak."""
        return {
            name: {"seconds": s, "cached": self.cached.get(name, False)}
            | (self.work[name].to_json(s, self.peak_gflops) if name in self.work else {})
            for name, s in self.seconds.items()
        }


def provenance(
    model: Model,
    paragraphs: Paragraphs,
    paragraphs_source: str | None,
    fingerprints: Mapping[str, str],
    options: ReportOptions,
) -> dict:
    """Where the model and data came from, and what ran: shown in the report and in results.json (`fingerprints`:
    the run's hashes of the weights and of the paragraphs)."""
    cfg = model.cfg
    source = model_source(model)
    model_info = {
        "spec": model_name(model),
        "path": source.path if source else None,
        "architecture": architecture(model),
        "layers": cfg.n_layers,
        "heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_mlp": cfg.d_mlp,
        "vocabulary": cfg.d_vocab,
        "context": cfg.n_ctx,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": fingerprints["weights"],
    }
    if source and source.path and (Path(source.path) / "metadata.json").exists():
        meta = json.loads((Path(source.path) / "metadata.json").read_text())
        corpus = meta.get("corpus", {})
        model_info["training_corpus"] = corpus.get("source")
        model_info["training_tokens"] = meta.get("training", {}).get("tokens_seen")
    splits = paragraphs.meta.get("split")
    data_info = {
        "source": paragraphs_source or "(given in memory)",
        "paragraphs": len(paragraphs),
        "prefix_len": paragraphs.prefix_len,
        "continuation_len": paragraphs.continuation_len,
        "tokens_sha256": fingerprints["paragraphs"],
    }
    if splits is not None:
        data_info["splits"] = ", ".join(f"{s}: {splits.count(s)}" for s in sorted(set(splits)))
    run_info = {
        "interp": interp_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(cfg.device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return {"model": model_info, "paragraphs": data_info, "options": options.to_dict(), "run": run_info}


def interp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interp")
    except PackageNotFoundError:
        return "unknown"


def sample_paragraphs(paragraphs: Paragraphs, limit: int | None, seed: int) -> Paragraphs:
    """At most `limit` paragraphs, drawn with `seed`, in their original order (all of them if fewer)."""
    if limit is None or len(paragraphs) <= limit:
        return paragraphs
    keep = torch.randperm(len(paragraphs), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return paragraphs.select(keep)


def select_steps(options: ReportOptions, steps: Sequence[Step]) -> list[Step]:
    """The steps `options.steps` asks for, with the steps they depend on, in pipeline order."""
    names = [s.name for s in steps]
    if options.steps is None:
        return list(steps)
    unknown = [s for s in options.steps if s not in names]
    if unknown:
        raise UserError(f"unknown report step(s) {', '.join(unknown)}: the steps are {', '.join(names)}")
    wanted = set(options.steps)
    for step in reversed(steps):  # a chosen step brings what it depends on (listed before it)
        if step.name in wanted:
            wanted |= set(step.depends)
    return [s for s in steps if s.name in wanted]


def run_report(
    model: Model,
    paragraphs: Paragraphs,
    out_dir: str | Path,
    *,
    options: ReportOptions = ReportOptions(),
    steps: Sequence[Step] | None = None,
    use_cache: bool = True,
    paragraphs_source: str | None = None,
    image_formats: Sequence[str] = ("png", "svg"),
) -> ReportRun:
    """Run every step (or resume from cached ones) and write report.html, results.json, figures/.

    The outputs are built in a staging folder inside `out_dir` and moved into place only at the
    end, so an interrupted run leaves the previous report untouched (and its finished steps cached
    under `out_dir/.cache`). The model is never changed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a folder")
    if steps is None:
        steps = default_steps()
    steps = select_steps(options, steps)
    n_given = len(paragraphs)
    paragraphs = sample_paragraphs(paragraphs, options.max_paragraphs, options.seed)
    weights = weights_fingerprint(model)  # hashed once: the cache key and the provenance both read it
    base = {
        "model": model_fingerprint(model, weights),
        "paragraphs": paragraphs_fingerprint(paragraphs),
        "code": code_fingerprint(),
    }
    fingerprints: dict[str, str] = {}  # per step run so far: its result's fingerprint
    cache = StepCache(out_dir / ".cache")
    run = ReportRun(out_dir, out_dir / "report.html", out_dir / "results.json", [])
    sections: list[Section] = []
    progress = options.progress
    bar = tqdm(steps, desc="report", unit="step", disable=not progress)
    for step in bar:
        bar.set_postfix_str(step.name)
        start = time.perf_counter()
        key = step_key(step, base, options, fingerprints)
        hit, result = cache.load(step.name, key) if use_cache else (False, None)
        if not hit:
            inputs = StepInputs(
                model,
                paragraphs,
                DeclaredOptions(options, step.options, step.name),
                DeclaredResults(dict(run.results), step.depends, step.name),
            )
            with count_work() as run.work[step.name]:
                result = step.analyse(inputs)
            cache.store(step.name, key, result)
        fingerprints[step.name] = result_fingerprint(result)
        run.results[step.name] = result
        run.cached[step.name] = hit
        run.seconds[step.name] = round(time.perf_counter() - start, 2)
        sections.append(
            _skipped_section(step, result) if isinstance(result, Skipped) else step.section(result, run.results)
        )
    run.peak_gflops = round(matmul_gflops(), 1)
    prov = provenance(model, paragraphs, paragraphs_source, base | {"weights": weights}, options)
    if len(paragraphs) < n_given:
        prov["paragraphs"]["sampled"] = f"a seeded random sample of {len(paragraphs)} of the {n_given} paragraphs given"
    _write_outputs(run, sections, prov, image_formats, progress)
    return run


def _write_outputs(
    run: ReportRun, sections: list[Section], prov: dict, image_formats: Sequence[str], progress: bool
) -> None:

    out_dir = run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        figures = {f"{s.key}_{name}": fig for s in sections for name, fig in s.figures.items()}
        start = time.perf_counter()
        if image_formats and figures:
            if progress:
                print(f"report: exporting {len(figures)} figures as {', '.join(image_formats)} ...", flush=True)
            # a figure the last report exported unchanged is copied from its figures/, not exported again
            save_figures(figures, staging / "figures", formats=tuple(image_formats), previous=out_dir / "figures")
        run.seconds["export_images"] = round(time.perf_counter() - start, 2)
        sections = [*sections, cost_section(run.cost(), run.peak_gflops)]
        results = {
            "options": prov["options"],  # `interp report --config results.json` reruns with exactly these
            "provenance": prov,
            "steps": {
                name: {"seconds": run.seconds[name], "cached": run.cached[name], "result": result_json(r)}
                for name, r in run.results.items()
            },
            "figures": sorted(figures),
            "tables": {
                s.key: [
                    {"caption": t.caption, "columns": list(t.columns), "rows": to_jsonable(t.rows)} for t in s.tables
                ]
                for s in sections
                if s.tables
            },
            "notes": {s.key: list(s.notes) for s in sections if s.notes},
            "cost": {"peak_gflops": run.peak_gflops, "steps": run.cost()},
        }
        write_json(staging / "results.json", results)
        html = report_html(
            title=f"Where does {prov['model']['spec']} store the text it recites?",
            provenance=prov,
            sections=sections,
            intro=(
                "This report runs the whole interp pipeline on one model and one paragraph set. Each section says "
                "what its figure shows and what the numbers mean; every number is also in results.json beside "
                f"this file, and {_saved_as(image_formats)}. Figures are interactive (hover, zoom); the page needs "
                "no network."
            ),
        )
        write_text_atomic(staging / "report.html", html)
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    folder = out_dir / "figures"
    run.figures = sorted(p for p in folder.glob("*") if p.name != FIGURE_HASHES) if folder.exists() else []


def _saved_as(image_formats: Sequence[str]) -> str:
    """How the report's intro names the static images written (or that none were asked for)."""
    names = [f.upper() for f in image_formats]
    if not names:
        return "no static images were asked for (`interp report --formats png,svg` saves each figure in figures/)"
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"each figure is saved as {listed} in figures/"


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Swap the complete new outputs in: figures folder, then results.json, then report.html."""
    new_figures, old_figures = staging / "figures", out_dir / "figures"
    if new_figures.exists():
        trash = staging / "old-figures"
        if old_figures.exists():
            old_figures.replace(trash)
        new_figures.replace(old_figures)
    (staging / "results.json").replace(out_dir / "results.json")
    (staging / "report.html").replace(out_dir / "report.html")


def _skipped_section(step: Step, skipped: Skipped) -> Section:
    return Section(
        key=step.name, title=f"{step.name}: skipped", notes=[f"The {step.name} step did not run: {skipped.reason}."]
    )
