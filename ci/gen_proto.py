"""Compile proto/ into python/raftkv/pb/ (messages, typing stubs and gRPC stubs).

Run after editing a .proto file: ``python ci/gen_proto.py``. The generated modules are
committed; tests/test_proto_generated.py checks that they match the .proto files.

The .proto files import each other as ``etcd/api/...``; protoc turns such imports into
top-level Python packages, so this copies them into a staging tree under
``raftkv/pb/`` with imports rewritten, which makes the generated code import
``raftkv.pb.etcd.api...``. Package, message and service names (the wire format) do not
change.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto"
OUT = ROOT / "python"
PREFIX = "raftkv/pb/"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        sources = []
        for src in sorted(PROTO.rglob("*.proto")):
            rel = src.relative_to(PROTO)
            dst = stage / PREFIX / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            text = re.sub(r'^import "(etcd/[^"]+)";', rf'import "{PREFIX}\1";', src.read_text(),
                          flags=re.M)
            dst.write_text(text)
            sources.append(str(Path(PREFIX) / rel))
        include = str(Path(protoc.__file__).parent / "_proto")
        args = ["protoc", f"-I{stage}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", *sources]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
    generated = sorted((out / PREFIX).rglob("*.py*"))
    for directory in {p.parent for p in generated} | {out / "raftkv" / "pb"}:
        while directory != out / "raftkv":
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("")
            directory = directory.parent
    return generated


def main() -> None:
    target = OUT / "raftkv" / "pb"
    if target.exists():
        shutil.rmtree(target)
    for path in generate(OUT):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    sys.exit(main())
