"""Generates the gRPC/protobuf stubs from proto/ as part of every build.

The stubs are never committed or hand-edited: `pip install -e .` (or any wheel
build) runs build_py, which runs grpc_tools.protoc into proto/voicefleet/.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
PROTO_ROOT = ROOT / "proto"


def generate_stubs() -> None:
    from grpc_tools import protoc  # build requirement, see pyproject.toml

    include = Path(protoc.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={PROTO_ROOT}",
        f"--pyi_out={PROTO_ROOT}",
        f"--grpc_python_out={PROTO_ROOT}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(protos))
    for folder in {(PROTO_ROOT / p).parent for p in protos}:
        while folder != PROTO_ROOT:
            (folder / "__init__.py").touch()
            folder = folder.parent


class BuildWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


def packages() -> list[str]:
    # package-dir in pyproject.toml maps voicefleet_operator -> operator/voicefleet_operator
    # and voicefleet -> proto/voicefleet; list their subpackages under those import names.
    found = find_packages(include=["agent_pod", "agent_pod.*"])
    found += ["voicefleet_operator." + p for p in find_packages("operator/voicefleet_operator")]
    found += ["voicefleet_operator", "voicefleet", "voicefleet.v1"]
    return found


setup(cmdclass={"build_py": BuildWithStubs}, packages=packages())
