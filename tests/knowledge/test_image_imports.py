"""Each image installs one role's extra (pyproject.toml): the knowledge server's command must import
nothing of the agent's stacks, and the agent pod nothing of the knowledge server's stores or embedder.
Checked in a fresh interpreter, where sys.modules shows what an entry point really pulls in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent_pod.cli import SUBCOMMANDS, build_parser, commands_for

# In the agent extra only: the audio stack, WebRTC, gRPC and its generated stubs, the agent runtime.
AGENT_ONLY = ("aiortc", "av", "onnxruntime", "pocketsphinx", "soxr", "grpc", "voicefleet")
AGENT_RUNTIME = "agent_pod.runtime"
# In the knowledge extra only: the stores and the offline embedding model.
KNOWLEDGE_ONLY = ("wordllama", "sqlean", "psycopg")


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_knowledge_servers_command_imports_none_of_the_agents_stacks() -> None:
    modules = imported_after(
        "from agent_pod.cli import build_parser\n"
        "build_parser(['knowledge', 'serve']).parse_args(['knowledge', 'serve'])\n"
        "import agent_pod.knowledge.serve, agent_pod.knowledge.sources.mounts"
    )
    assert "agent_pod.knowledge.serve" in modules
    assert AGENT_RUNTIME not in modules
    assert not {m for m in modules if m.split(".")[0] in AGENT_ONLY}


def test_the_agent_pod_and_its_knowledge_client_import_no_store_or_embedder() -> None:
    modules = imported_after(
        "from agent_pod.cli import build_parser\n"
        "build_parser(['pod']).parse_args(['pod'])\n"
        "import agent_pod.runtime, agent_pod.knowledge.client, agent_pod.knowledge.call"
    )
    assert "agent_pod.knowledge.client" in modules
    assert not {m for m in modules if m.split(".")[0] in KNOWLEDGE_ONLY}


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_a_named_subcommand_loads_only_its_own_module(name: str) -> None:
    assert commands_for([name, "--help"]) == [name]
    (subparsers,) = [a for a in build_parser([name])._actions if a.dest == "command"]
    assert set(subparsers.choices) == {name}  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [[], ["--help"], ["nope"]])
def test_help_and_unknown_subcommands_load_every_module(argv: list[str]) -> None:
    assert commands_for(argv) == list(SUBCOMMANDS)


def test_listing_says_which_subcommands_this_installation_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "ghost", "agent_pod.cli.no_such_module")
    listing = " ".join(build_parser([]).format_help().split())
    assert "ghost (not in this installation: no module agent_pod.cli.no_such_module)" in listing
    with pytest.raises(ModuleNotFoundError):
        build_parser(["ghost"])
