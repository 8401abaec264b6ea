"""TorchScript (``torch.jit.save``) and ``torch.export`` (``torch.export.save``, ``.pt2``) programs as import sources.

Both are zip archives, told apart from an ONNX file (a protobuf) and from each other by their members. The
pipeline exports the program to ONNX itself, with example inputs read from the evaluation data (the program
carries no input shapes, or, for ``torch.export``, fixed ones): from there on it is an imported ONNX model like
any other. The exporters:

* TorchScript: ``torch.onnx.export(dynamo=False)``, opset 17, the batch axis of every input and output dynamic
  (the only exporter that takes a ``ScriptModule``);
* ``torch.export``: ``torch.onnx.export(dynamo=True)`` on the loaded ``ExportedProgram``, opset 18 (the dynamo
  exporter's own). Its batch dimension must have been exported dynamic: a program traced with a fixed batch size
  holds guards on it that no re-export can lift, so that is a clear error naming the fix.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.repository import sha256_file
from compress.errors import ConfigError, DataError, ExportError
from compress.imported.config import ImportDataSection

Kind = Literal["onnx", "torchscript", "torch.export"]
EXAMPLE_ROWS = 8
TORCHSCRIPT_OPSET = 17
EXPORT_OPSET = 18


@dataclass(frozen=True)
class Exported:
    """The ONNX file made from a program, and what the lineage records about the program it came from."""

    onnx: Path
    kind: Kind
    program: Path
    sha256: str
    exporter: str


def program_kind(path: Path) -> Kind:
    """``onnx`` unless ``path`` is a zip archive holding a TorchScript or a ``torch.export`` program."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return "onnx"  # load_source reports a missing or invalid ONNX file
    with zipfile.ZipFile(path) as z:
        members = [n.split("/", 1)[-1] for n in z.namelist()]
    if "archive_format" in members or "models/model.json" in members:
        return "torch.export"
    if "constants.pkl" in members and any(m.startswith("code/") for m in members):
        return "torchscript"
    raise ConfigError(
        f"{path} is a zip archive but neither a TorchScript file (torch.jit.save) nor a torch.export program "
        "(torch.export.save); give an ONNX file or one of those"
    )


def export_program(path: Path, kind: Kind, data: ImportDataSection, eval_path: Path, workdir: Path) -> Exported:
    """Export the program to ``workdir/program.onnx`` with example inputs taken from the first rows of the data."""
    import torch

    dst = workdir / "program.onnx"
    with warnings.catch_warnings():
        # the loaders and exporters warn about the user's program and torch's own deprecations (torch.jit.*, the
        # TorchScript exporter); the export is judged by onnx.checker and the FP32 reference run, not by warnings
        warnings.simplefilter("ignore")
        if kind == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
            names = [a.name for a in module.forward.schema.arguments[1:]]
            example = _example(names, data, eval_path, None)
            _export(path, kind, example, lambda args: _torchscript(module, names, args, dst))
            exporter = f"torch.onnx.export(dynamo=False) opset {TORCHSCRIPT_OPSET}, torch {torch.__version__}"
        else:
            program = torch.export.load(str(path))
            shapes = _export_input_shapes(program)
            _check_dynamic_batch(path, shapes)
            example = _example(list(shapes), data, eval_path, shapes)
            _export(path, kind, example, lambda args: _exported_program(program, list(shapes), dst))
            exporter = f"torch.onnx.export(dynamo=True) opset {EXPORT_OPSET}, torch {torch.__version__}"
    return Exported(dst, kind, path.resolve(), sha256_file(path), exporter)


def _export_input_shapes(program: Any) -> dict[str, list[int | None]]:
    """User inputs of an ``ExportedProgram`` and their shapes (None where a dimension is symbolic)."""
    wanted = set(program.graph_signature.user_inputs)
    shapes: dict[str, list[int | None]] = {}
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in wanted:
            val = node.meta.get("val")
            dims = list(getattr(val, "shape", []))
            shapes[node.name] = [d if isinstance(d, int) else None for d in dims]
    return shapes


def _check_dynamic_batch(path: Path, shapes: dict[str, list[int | None]]) -> None:
    fixed = {n: s for n, s in shapes.items() if s and s[0] is not None}
    if fixed:
        name, shape = next(iter(fixed.items()))
        raise ExportError(
            f"{path.name}: torch.export program input {name!r} has a fixed batch size ({shape}); the server batches "
            f"requests, so export it with a dynamic batch axis: torch.export.export(model, args, "
            f"dynamic_shapes={{{name!r}: {{0: torch.export.Dim('batch')}}}})"
        )


def _example(
    names: list[str], data: ImportDataSection, eval_path: Path, shapes: dict[str, list[int | None]] | None
) -> dict[str, np.ndarray]:
    """The first rows of the evaluation data as the program's inputs, by name (Parquet: one FP32 input)."""
    if eval_path.suffix == ".npz":
        with np.load(eval_path, allow_pickle=False) as z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise DataError(
                    f"{eval_path.name}: no array for program input(s) {missing} (the program takes {names}; "
                    f"arrays: {sorted(z.files)})"
                )
            arrays = {n: z[n][:EXAMPLE_ROWS] for n in names}
        example = {n: a.astype(np.float32) if a.dtype == np.float64 else a for n, a in arrays.items()}
    elif eval_path.suffix in (".parquet", ".pq"):
        if len(names) != 1:
            raise DataError(
                f"the program takes {len(names)} inputs {names}; a Parquet file feeds exactly one [batch, F] input "
                "(use an .npz file with one array per input name)"
            )
        import pyarrow.parquet as pq

        table = pq.read_table(eval_path)
        features = data.features or [c for c in table.column_names if c not in (data.label, data.group)]
        missing = [c for c in features if c not in table.column_names]
        if missing:
            raise DataError(f"{eval_path.name}: feature columns {missing} are missing (columns: {table.column_names})")
        rows = table.slice(0, EXAMPLE_ROWS).select(features).to_pandas().to_numpy(dtype=np.float32)
        example = {names[0]: np.ascontiguousarray(rows)}
    else:
        raise DataError(f"{eval_path}: data must be .parquet or .npz")
    for name, want in (shapes or {}).items():
        got = list(example[name].shape)
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want[1:], got[1:], strict=False)):
            shown = ["batch" if d is None else d for d in want]
            raise DataError(
                f"program input {name!r} expects shape {shown}, but {eval_path.name} gives {['batch', *got[1:]]}"
            )
    return example


def _export(path: Path, kind: Kind, example: dict[str, np.ndarray], run: Any) -> None:
    import torch

    args = tuple(torch.from_numpy(np.array(a)) for a in example.values())  # a writable copy
    try:
        with torch.no_grad():
            run(args)
    except Exception as e:  # noqa: BLE001 - the exporters raise many types; one line naming what was fed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fed = ", ".join(f"{n}: {a.dtype} {['batch', *a.shape[1:]]}" for n, a in example.items())
        raise ExportError(
            f"{path.name}: exporting the {kind} program to ONNX failed with inputs from the data ({fed}); do the "
            f"program's inputs match the data? {type(e).__name__}: {first}"
        ) from None


def _outputs(n: int) -> list[str]:
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def _torchscript(module: Any, names: list[str], args: tuple[Any, ...], dst: Path) -> None:
    import torch

    out = module(*args)
    outs = _outputs(len(out) if isinstance(out, tuple | list) else 1)
    torch.onnx.export(
        module,
        args,
        str(dst),
        input_names=names,
        output_names=outs,
        dynamic_axes={n: {0: "batch"} for n in [*names, *outs]},
        opset_version=TORCHSCRIPT_OPSET,
        dynamo=False,
    )


def _exported_program(program: Any, names: list[str], dst: Path) -> None:
    import torch

    n_out = len(program.graph_signature.user_outputs)
    torch.onnx.export(
        program,
        (),
        str(dst),
        input_names=names,
        output_names=_outputs(n_out),
        opset_version=EXPORT_OPSET,
        dynamo=True,
        external_data=False,
    )
