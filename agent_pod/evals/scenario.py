"""The eval scenario format: a suite of scripted calls and what the agent must (not) do in them.

These models are the contract between the eval runner and the suites people write (including the
built-in packs); docs/evals.md describes the format and schemas/eval-suite.schema.json is generated
from these models (``suite_json_schema``)."""

from __future__ import annotations

import re
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Mode = Literal["text", "audio"]
Severity = Literal["low", "medium", "high", "critical"]

DEFAULT_ESCALATION_TOOLS = ("transfer_to_human", "escalate", "handoff")
SCHEMA_ID = "https://voicefleet.io/schemas/eval-suite.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compiled(pattern: str) -> str:
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return pattern


class ToolExpectation(_Strict):
    """A tool of this name was called with arguments valid against ``arguments`` (a JSON Schema)."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | None = None

    @field_validator("arguments")
    @classmethod
    def _schema_is_valid(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"'arguments' is not a valid JSON Schema: {exc.message}") from None
        return schema


EXPECTATION_KINDS = (
    "contains",
    "regex",
    "absent",
    "absent_regex",
    "tool",
    "no_tool",
    "escalates",
    "interrupted",
    "within_ms",
    "judge",
    "any_of",
    "not_leaking_prompt",
)


class Expectation(_Strict):
    """One check on the agent's answer; exactly one of the keys is set (its kind)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    contains: str | list[str] | None = None
    regex: str | None = None
    absent: str | list[str] | None = None
    absent_regex: str | None = None
    tool: ToolExpectation | None = None
    no_tool: Literal[True] | list[str] | None = None
    escalates: bool | None = None
    interrupted: Literal[True] | None = None
    within_ms: int | None = Field(default=None, ge=0)
    judge: str | None = Field(default=None, min_length=1)
    any_of: list[Expectation] | None = Field(default=None, min_length=1)
    not_leaking_prompt: Literal[True] | None = None

    @field_validator("regex", "absent_regex")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        return None if pattern is None else _compiled(pattern)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Expectation:
        kinds = [kind for kind in EXPECTATION_KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"an expectation has exactly one key (one of {', '.join(EXPECTATION_KINDS)}), "
                f"got {', '.join(kinds) or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in EXPECTATION_KINDS if getattr(self, kind) is not None)

    def uses_kind(self, kind: str) -> bool:
        """This expectation is of ``kind``, or nests one in ``any_of``."""
        return self.kind == kind or any(inner.uses_kind(kind) for inner in self.any_of or [])


class BargeIn(_Strict):
    """The caller interrupts the agent's answer ``after_ms`` after its first audio of that answer."""

    after_ms: int = Field(ge=0)
    say: str = Field(min_length=1)


class Turn(_Strict):
    """One caller turn: ``say`` (spoken in audio mode, typed in text mode) or ``type`` (always typed)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["say"]}, {"required": ["type"]}]},
    )

    say: str | None = Field(default=None, min_length=1)
    type: str | None = Field(default=None, min_length=1)
    barge_in: BargeIn | None = None
    expect: list[Expectation] = []

    @model_validator(mode="after")
    def _say_or_type(self) -> Turn:
        if (self.say is None) == (self.type is None):
            raise ValueError("a turn has exactly one of 'say' or 'type'")
        return self

    @property
    def text(self) -> str:
        return self.say if self.say is not None else str(self.type)

    @property
    def typed(self) -> bool:
        """This turn reaches the agent as text whatever the mode."""
        return self.type is not None


class Defaults(_Strict):
    """Settings every scenario of a suite gets unless it sets its own."""

    mode: Mode = "text"
    repeat: int = Field(default=1, ge=1)
    escalation_tools: list[str] = list(DEFAULT_ESCALATION_TOOLS)
    turn_timeout_ms: int = Field(default=20000, gt=0)


class ScenarioSettings(_Strict):
    """A scenario's effective settings: its own fields over the suite's defaults."""

    mode: Mode
    repeat: int
    escalation_tools: list[str]
    turn_timeout_ms: int


class Scenario(_Strict):
    name: str = Field(min_length=1)
    category: str | None = None
    tags: list[str] = []
    description: str | None = None
    severity: Severity = "medium"
    mode: Mode | None = None
    repeat: int | None = Field(default=None, ge=1)
    escalation_tools: list[str] | None = None
    turn_timeout_ms: int | None = Field(default=None, gt=0)
    metadata: dict[str, str] = {}
    turns: list[Turn] = Field(min_length=1)
    expect: list[Expectation] = []

    @field_validator("expect")
    @classmethod
    def _no_per_turn_kinds(cls, expect: list[Expectation]) -> list[Expectation]:
        if any(expectation.uses_kind("within_ms") for expectation in expect):
            raise ValueError("'within_ms' is a per-turn expectation: put it under a turn's 'expect'")
        return expect

    def settings(self, defaults: Defaults) -> ScenarioSettings:
        return ScenarioSettings(
            mode=self.mode or defaults.mode,
            repeat=self.repeat or defaults.repeat,
            escalation_tools=(
                self.escalation_tools if self.escalation_tools is not None else defaults.escalation_tools
            ),
            turn_timeout_ms=self.turn_timeout_ms or defaults.turn_timeout_ms,
        )


class Suite(_Strict):
    suite: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str | None = None
    defaults: Defaults = Defaults()
    scenarios: list[Scenario] = Field(min_length=1)

    # Where the suite was read from (a file path or a ConfigMap key); set by the loader.
    _source: str = PrivateAttr(default="<memory>")

    @field_validator("scenarios")
    @classmethod
    def _unique_names(cls, scenarios: list[Scenario]) -> list[Scenario]:
        seen: set[str] = set()
        for scenario in scenarios:
            if scenario.name in seen:
                raise ValueError(f"duplicate scenario name {scenario.name!r}")
            seen.add(scenario.name)
        return scenarios

    @property
    def source(self) -> str:
        return self._source

    def with_source(self, source: str) -> Suite:
        self._source = source
        return self

    def settings(self, scenario: Scenario) -> ScenarioSettings:
        return scenario.settings(self.defaults)


def suite_json_schema() -> dict[str, Any]:
    """The published JSON Schema of a suite file (schemas/eval-suite.schema.json)."""
    schema = Suite.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "voicefleet eval suite",
        **{key: value for key, value in schema.items() if key != "title"},
    }
