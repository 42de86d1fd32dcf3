"""Retrieval in a call through the real pipeline, against a real knowledge server on loopback: the LLM
calls search_knowledge (tool mode) or gets the passages before its request (context mode), and the
turn's record lists the documents its answer was grounded in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_pod.config import AgentConfig, KnowledgeSpec
from tests.knowledge.test_server import DOCS
from tests.pipeline.harness import Harness, make_config
from tests.support.knowledge import knowledge_server


def with_knowledge(cfg: AgentConfig, url: str, mode: str) -> AgentConfig:
    cfg.knowledge = KnowledgeSpec.model_validate(
        {"bases": [{"name": "faq", "url": url}], "mode": mode, "topK": 2, "budgetMs": 2000}
    )
    return cfg


async def test_the_llm_searches_and_the_turn_record_lists_the_documents(tmp_path: Path) -> None:
    rule = {
        "match": "premium",
        "tool": "search_knowledge",
        "arguments": {"query": "premium plan price"},
        "then": "{result[passages][0][text]}",
    }
    async with (
        knowledge_server(tmp_path, DOCS, name="call") as (_, url),
        Harness(with_knowledge(make_config(rules=[rule]), url, "tool")) as h,
    ):
        h.session.push_text("how much is premium?")
        await h.drain_agent(within=30)
        [final] = [e for e in h.of_type("agent_text") if e.final]
        assert "49 euros" in final.text
        record = h.session.turn_records[-1]
        assert record.knowledge_docs and record.knowledge_docs[0].endswith("prices.md")
        assert len(record.knowledge_docs) <= 2
        [audit] = [r for r in h.session.tool_audit if r.tool == "search_knowledge"]
        assert audit.outcome == "succeeded"


async def test_context_mode_puts_the_passages_before_the_request(
    tmp_path: Path, openai_server: Any, monkeypatch: Any
) -> None:
    from tests.wire.openai_server import ChatReply

    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    openai_server.script_chat(ChatReply(text="We open at nine."))
    async with knowledge_server(tmp_path, DOCS, name="ctx") as (_, url):
        cfg = make_config()
        cfg.pipeline.llm.provider = "openai"
        cfg.pipeline.llm.base_url = openai_server.base_url
        async with Harness(with_knowledge(cfg, url, "context")) as h:
            h.session.push_text("when do you open in the morning?")
            await h.drain_agent(within=30)
            [request] = openai_server.chat_requests()
            blocks = [
                m for m in request if m["role"] == "system" and "Knowledge base passages" in m["content"]
            ]
            assert len(blocks) == 1 and "opens at nine" in blocks[0]["content"]
            assert request.index(blocks[0]) == len(request) - 2 and request[-1]["role"] == "user"
            record = h.session.turn_records[-1]
            assert record.knowledge_docs[0].endswith("hours.md")
            assert f'doc="{record.knowledge_docs[0]}"' in blocks[0]["content"]
