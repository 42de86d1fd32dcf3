"""The token-budgeted context (pure): order, budget, pinned system prompt, tool calls kept with their
results; property-based over random histories, budgets, memory and summaries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_pod.config import ContextSpec, InputLimitsSpec, MemoryBlockSpec
from agent_pod.context.assembler import SUMMARY_HEADER, assemble, split_turns
from agent_pod.context.blocks import MEMORY_HEADER, initial_blocks
from agent_pod.context.compaction import fold_summary, turns_to_summarize
from agent_pod.context.tokens import MESSAGE_OVERHEAD, message_tokens, messages_tokens, text_tokens
from agent_pod.conversation import CALLER_CONTEXT_HEADER, ChatMessage, Conversation, ToolCall

PROMPT = "You are a careful booking agent. Never reveal account numbers."


def turn(n: int, words: int = 5, tools: int = 0) -> list[ChatMessage]:
    tid = f"turn-{n}"
    out = [ChatMessage(role="user", content=" ".join(["word"] * words) + f" {n}", turn_id=tid)]
    for k in range(tools):
        call = ToolCall(id=f"c{n}-{k}", name="lookup", arguments=f'{{"q": "{n}"}}')
        out += [
            ChatMessage(role="assistant", content="Let me check.", tool_calls=[call], turn_id=tid),
            ChatMessage(role="tool", content='{"found": true}', tool_call_id=call.id, turn_id=tid),
        ]
    out.append(ChatMessage(role="assistant", content=f"answer {n}", turn_id=tid))
    return out


def conversation(turns: int, **kwargs) -> Conversation:
    messages = [m for n in range(1, turns + 1) for m in turn(n, **kwargs)]
    return Conversation(session_id="s", prompt_id="p", messages=messages)


def spec(**fields) -> ContextSpec:
    return ContextSpec.model_validate(fields)


def test_order_is_prompt_context_memory_summary_then_turns():
    convo = conversation(3)
    convo.metadata = {"caller": "Ada"}
    convo.memory = initial_blocks([MemoryBlockSpec(label="facts", description="Facts", initial="likes tea")])
    convo.summary = "The caller booked a table."
    out = assemble(PROMPT, convo, spec()).messages
    assert out[0] == ChatMessage(role="system", content=PROMPT)
    assert out[1].content.startswith(CALLER_CONTEXT_HEADER)
    assert out[2].content.startswith(MEMORY_HEADER) and "likes tea" in out[2].content
    assert out[3].content == f"{SUMMARY_HEADER}\nThe caller booked a table."
    assert out[4:] == convo.messages


def test_a_short_budget_drops_the_oldest_turns_whole_and_keeps_the_newest():
    convo = conversation(40, words=40, tools=1)
    assembly = assemble(PROMPT, convo, spec(maxTokens=600, targetTokens=300))
    body = assembly.messages[1:]
    assert messages_tokens(assembly.messages) == assembly.tokens <= 600
    assert body[-1] == convo.messages[-1] and body == convo.messages[-len(body) :]
    assert body[0].role == "user"  # a whole turn, never its tail
    assert assembly.left_out_turns == 40 - len([m for m in body if m.role == "user"])


def test_the_newest_caller_message_is_cut_rather_than_left_out():
    convo = Conversation(
        session_id="s", prompt_id="p", messages=[ChatMessage(role="user", content="x" * 5000)]
    )
    out = assemble(PROMPT, convo, spec(maxTokens=256, targetTokens=128))
    assert out.tokens <= 256 and out.messages[-1].role == "user"
    assert 0 < len(out.messages[-1].content) < 5000


def test_the_estimate_errs_high_for_prose_and_cjk():
    prose = "The caller wants to move the booking from Friday to Saturday evening at seven. " * 20
    assert text_tokens(prose) >= len(prose) / 4  # BPE averages about 4 characters per token in English
    assert text_tokens("予約を変更したい") >= 8  # about one token per CJK character
    assert message_tokens(ChatMessage(role="user", content="")) > 0


def test_older_turns_are_summarised_once_the_call_is_over_target():
    convo = conversation(12, words=60)
    limits = InputLimitsSpec()
    budget = spec(maxTokens=4000, targetTokens=1000, keepLastTurns=3)
    old = turns_to_summarize(PROMPT, convo, budget, limits)
    assert [m.turn_id for m in old if m.role == "user"] == [f"turn-{n}" for n in range(1, 10)]
    fold_summary(convo, old, "Nine turns about bookings.")
    assert convo.summary_through == 9 and [m.turn_id for m in convo.messages if m.role == "user"] == [
        "turn-10",
        "turn-11",
        "turn-12",
    ]
    assert turns_to_summarize(PROMPT, convo, budget, limits) == []  # three turns left: all kept
    small = conversation(12, words=1)
    assert turns_to_summarize(PROMPT, small, spec(keepLastTurns=3), limits) == []  # within target


def test_history_near_the_storage_caps_is_summarised_before_trim_drops_it():
    convo = conversation(12, words=1)
    limits = InputLimitsSpec(max_history_turns=20)
    assert len(turns_to_summarize(PROMPT, convo, spec(keepLastTurns=2), limits)) == 10 * 2
    # caps tighter than keepLastTurns: half the cap is kept, the rest summarised before it is trimmed
    tight = InputLimitsSpec(max_history_turns=4)
    old = turns_to_summarize(PROMPT, conversation(4, words=1), spec(keepLastTurns=6), tight)
    assert [m.turn_id for m in old if m.role == "user"] == ["turn-1", "turn-2"]


# ---------------------------------------------------------------- properties


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Conversation, ContextSpec]:
    count = draw(st.integers(min_value=0, max_value=30))
    messages: list[ChatMessage] = []
    if count and draw(st.booleans()):
        messages.append(ChatMessage(role="system", content="Earlier turns were dropped."))
    for n in range(1, count + 1):
        messages += turn(n, words=draw(st.integers(0, 120)), tools=draw(st.integers(0, 2)))
    convo = Conversation(session_id="s", prompt_id="p", messages=messages)
    if draw(st.booleans()):
        convo.metadata = {"caller": "x" * draw(st.integers(0, 300))}
    if draw(st.booleans()):
        value = "m" * draw(st.integers(0, 2000))
        convo.memory = initial_blocks(
            [MemoryBlockSpec(label="facts", description="d", limit_chars=2000, initial=value)]
        )
    convo.summary = "s " * draw(st.integers(0, 400))
    prompt = "p" * draw(st.integers(1, 3000))
    max_tokens = draw(st.integers(256, 6000))
    budget = spec(maxTokens=max_tokens, targetTokens=draw(st.integers(128, max_tokens)))
    return prompt, convo, budget


@settings(max_examples=400, deadline=None)
@given(cases())
def test_assembly_invariants(case: tuple[str, Conversation, ContextSpec]) -> None:
    prompt, convo, budget = case
    before = convo.model_copy(deep=True)
    assembly = assemble(prompt, convo, budget)
    out = assembly.messages
    assert convo == before  # pure
    # the system prompt is always first, whole
    assert out[0] == ChatMessage(role="system", content=prompt)
    pinned = 2 if convo.metadata else 1
    assert all(m.role == "system" for m in out[:pinned])
    # within budget whenever the pinned part fits
    if messages_tokens(out[:pinned]) <= budget.max_tokens:
        assert messages_tokens(out) <= budget.max_tokens
    assert assembly.tokens == messages_tokens(out)
    # no tool call without its result, no result without its call
    calls = {c.id for m in out for c in m.tool_calls}
    results = {m.tool_call_id for m in out if m.role == "tool"}
    assert calls == results
    # the turns sent are the newest ones, in order (the newest caller message possibly cut)
    body = [m for m in out[pinned:] if not m.content.startswith((MEMORY_HEADER, SUMMARY_HEADER))]
    turns = split_turns(convo.messages)
    if body and body != convo.messages[-len(body) :]:
        # the one exception: the newest turn did not fit, its caller message is sent cut (after older turns)
        *whole, cut = body
        newest = turns[-1][0]
        assert (cut.role, cut.turn_id) == ("user", newest.turn_id) and newest.content.startswith(cut.content)
        earlier = [m for turn in turns[:-1] for m in turn]
        assert not whole or whole == earlier[-len(whole) :]
    if turns and budget.max_tokens - messages_tokens(out[:pinned]) > MESSAGE_OVERHEAD:
        assert body  # the caller's newest words always reach the LLM when anything fits
    if turns and messages_tokens(out[:pinned]) + messages_tokens(turns[-1]) <= budget.max_tokens:
        assert out[-len(turns[-1]) :] == turns[-1]  # the newest turn fits: it is sent whole


@settings(max_examples=200, deadline=None)
@given(cases(), st.integers(1, 8))
def test_summarising_keeps_the_newest_turns_and_every_tool_pair(
    case: tuple[str, Conversation, ContextSpec], keep: int
) -> None:
    prompt, convo, budget = case
    budget = budget.model_copy(update={"keep_last_turns": keep})
    users_before = [m.turn_id for m in convo.messages if m.role == "user"]
    old = turns_to_summarize(prompt, convo, budget, InputLimitsSpec())
    fold_summary(convo, old, "summary")
    users_after = [m.turn_id for m in convo.messages if m.role == "user"]
    assert users_after == users_before[-len(users_after) :] if users_after else not users_before
    assert len(users_after) >= min(keep, len(users_before))
    calls = {c.id for m in convo.messages for c in m.tool_calls}
    assert calls == {m.tool_call_id for m in convo.messages if m.role == "tool"}
    assert all(m.role != "system" or m.content != prompt for m in old)  # the prompt is never history
