"""Regenerate the checked-in stubs in ``app/grpc/generated/`` from ``app/grpc/protos/`` (grpcio-tools).

Run from the repository root (needs ``pip install grpcio-tools``; the stubs are committed, so serving does not)::

    python -m app.grpc.generate

It runs ``grpc_tools.protoc -I app/grpc/protos --python_out --pyi_out --grpc_python_out`` on every ``.proto``,
then rewrites two lines of each output so the stubs are a private, self-contained package:

* imports of sibling stubs become package-relative (protoc writes top-level ``import model_config_pb2``);
* descriptors go into :data:`app.grpc.generated.POOL`, not protobuf's default pool: ``tritonclient.grpc``
  registers its own ``inference.*`` messages in the default pool, and one process (a test, a client in the same
  interpreter) may load both without a duplicate-symbol error.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "protos"
OUT = HERE / "generated"
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_POOL_IMPORT = "from app.grpc.generated import POOL as _POOL\n"


def _protos() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _module_names(protos: list[str]) -> dict[str, str]:
    """Top-level module name protoc imports (``model_config_pb2``) -> package-relative dotted path."""
    names = {}
    for proto in protos:
        stem = proto.removesuffix(".proto").replace("/", ".")
        names[stem + "_pb2"] = "app.grpc.generated." + stem + "_pb2"
    return names


def _rewrite(path: Path, modules: dict[str, str]) -> None:
    text = path.read_text()
    for top, full in modules.items():
        parent, _, leaf = full.rpartition(".")
        pkg, _, _ = top.rpartition(".")
        pattern = rf"^from {re.escape(pkg)} import {leaf} as" if pkg else rf"^import {re.escape(top)} as"
        text = re.sub(pattern, f"from {parent} import {leaf} as", text, flags=re.M)
    if _DEFAULT_POOL in text:
        text = text.replace(_DEFAULT_POOL, "_POOL.AddSerializedFile(")
        text = text.replace("from google.protobuf import descriptor_pool as _descriptor_pool\n", _POOL_IMPORT)
    path.write_text(text)


def generate(out: Path = OUT) -> list[Path]:
    """Run protoc into ``out`` and rewrite the outputs; returns the files written (``out`` need not be OUT:
    the tests generate into a temporary folder and compare)."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # build-time only

    protos = _protos()
    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTOS}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    modules = _module_names(protos)
    written = sorted(out.rglob("*_pb2*.py*"))
    for generated in written:
        _rewrite(generated, modules)
    for folder in {d for p in written for d in p.relative_to(out).parents if d != Path(".")}:
        (out / folder / "__init__.py").touch()  # regular packages, so setuptools ships them in the wheel
    return written


def main() -> int:
    try:
        written = generate()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"generated {len(written)} files from {', '.join(_protos())} in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
