"""Writing outputs safely (a file is replaced only once its new content is complete) and reading JSON values back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Shaped
from torch import Tensor


def to_jsonable(obj: Any) -> Any:
    """Tensors, tuples and non-finite floats turned into plain JSON values (NaN -> None)."""
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def float_from_json(value: float | int | None) -> float:
    """A float as `to_jsonable` wrote it, read back: null (a NaN or an infinity) as NaN."""
    return float(nulls_as_nan(value))


def tensor_from_json(values: list | float | int | None, dtype: torch.dtype) -> Shaped[Tensor, "*shape"]:
    """A tensor as `to_jsonable` wrote it (nested lists), read back in `dtype`: nulls as NaN."""
    return torch.tensor(nulls_as_nan(values), dtype=dtype)


def nulls_as_nan(value: Any) -> Any:
    """A JSON value as `to_jsonable` wrote it, read back with every null in it (a NaN or an infinity, in nested lists
    and dicts too) as NaN; every other value as written. Only for values whose nulls can only be non-finite floats."""
    if isinstance(value, list):
        return [nulls_as_nan(v) for v in value]
    if isinstance(value, dict):
        return {k: nulls_as_nan(v) for k, v in value.items()}
    return float("nan") if value is None else value


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no stray temp file beside an output that could not be written
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as JSON, atomically."""
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=1))
