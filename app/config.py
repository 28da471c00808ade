"""Settings: a TOML file validated by pydantic-settings, overridable by environment and command line.

Where values come from, strongest first:
1. command-line options (passed to `load_settings(**overrides)`),
2. environment variables `QWQ_CHAT_<FIELD>` (nested with `__`, e.g. `QWQ_CHAT_SAMPLING__TEMPERATURE=0.7`),
3. the TOML file: `--config PATH`, else `qwq_chat.app.paths.config_dir()/config.toml` (optional),
4. the defaults below (QwQ-32B's model-card sampling, qwq_chat.app.sampling; see
   assets/default_config.toml).

A bad file or value raises `UserError` naming the key and the problem, never a traceback.
"""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from qwq_chat.app import paths
from qwq_chat.app.errors import UserError
from qwq_chat.app.reasoning import ReasoningSettings
from qwq_chat.app.sampling import Limits, Sampling

CONFIG_FILE_NAME = "config.toml"

# Actions the TUI binds; values are Textual key names. A user's [ui.keymap] overrides some of them.
DEFAULT_KEYMAP: dict[str, str] = {
    "send": "enter",
    "newline": "shift+enter",
    "stop": "escape",
    "new_chat": "ctrl+n",
    "regenerate": "ctrl+r",
    "edit_last": "ctrl+e",
    "toggle_reasoning": "ctrl+t",
    "toggle_sidebar": "ctrl+b",
    "search": "ctrl+f",
    "rename": "f2",
    "delete": "ctrl+d",
    "export": "ctrl+s",
    "copy_answer": "ctrl+y",
    "settings": "f3",
    "toggle_theme": "f4",
    "tools": "f6",
    "quit": "ctrl+q",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class UISettings(_Strict):
    """Read by the TUI (app/tui)."""

    reasoning: Literal["collapse", "open", "hidden"] = "collapse"
    theme: Literal["dark", "light"] = "dark"
    keymap: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_KEYMAP))

    @field_validator("keymap")
    @classmethod
    def _merge_keymap(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_KEYMAP))
        if unknown:
            raise ValueError(
                f"unknown action(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_KEYMAP)}"
            )
        return {**DEFAULT_KEYMAP, **value}


class OpenAISettings(_Strict):
    """The OpenAI-compatible backend (DashScope, vLLM, llama-server)."""

    # Name of the environment variable holding the key; the key itself is never stored anywhere.
    api_key_env: str = "DASHSCOPE_API_KEY"
    # Does the server's template open <think> in the prompt while the server does not separate
    # reasoning (vLLM without --reasoning-parser, llama-server without --reasoning-format)?
    # "auto": decide from the stream (a bare </think> means yes; reasoning_content or no tags, no);
    # true: content is reasoning until </think> (streams it live); false: content is the answer.
    think_in_prompt: Literal["auto"] | bool = "auto"
    timeout_s: float = Field(600.0, gt=0)


class McpServerSettings(_Strict):
    """One MCP server (`[mcp.servers.NAME]`, or an entry of a `mcpServers` JSON file).

    stdio: `command`, `args`, `env`, `cwd`; Streamable HTTP: `url`, `headers`. Strings may hold
    `${VAR}` (filled from the environment when the server starts, so secrets stay out of files).
    """

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    timeout_s: float | None = Field(None, gt=0)  # per call; None: [mcp] timeout_s


class McpSettings(_Strict):
    """MCP tool servers and the approval rules (docs/tools.md)."""

    servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    timeout_s: float = Field(60.0, gt=0)  # a tool call that takes longer becomes a tool error
    startup_timeout_s: float = Field(30.0, gt=0)  # a server not ready by then is marked failed
    max_result_chars: int = Field(100_000, ge=1000)  # a longer result becomes a tool error
    always_allow: list[str] = Field(default_factory=list)  # "SERVER/TOOL": run without asking
    approve_builtin: bool = False  # true: the built-in tools ask before each call too


class DraftSettings(_Strict):
    """Speculative decoding, llama backend (docs/models-and-gpus.md, "Faster decoding")."""

    # auto: as `draft_model` says (unset: off); off: never; ngram: prompt lookup; model: draft_model
    kind: Literal["auto", "off", "ngram", "model"] = "auto"
    max_tokens: int = Field(8, ge=1, le=64)  # longest guess the main model checks in one pass
    adaptive: bool = True  # shorter guesses after rejections, longer after full acceptance


_toml_source: ContextVar[dict[str, Any] | None] = ContextVar("_toml_source", default=None)


class _TomlDict(PydanticBaseSettingsSource):
    """Feeds the already-parsed TOML file to pydantic-settings, below the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_source.get() or {})


class Settings(BaseSettings, Limits):
    """Everything the chat app and `ask` need; see assets/default_config.toml for the documented file."""

    model_config = SettingsConfigDict(
        env_prefix="QWQ_CHAT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
        frozen=False,
    )

    model: str | None = None  # GGUF path, HF checkpoint dir, REPO[:QUANT], or the remote model name
    backend: Literal["llama", "openai", "transformers"] = "llama"
    base_url: str | None = (
        None  # openai backend: e.g. https://dashscope.aliyuncs.com/compatible-mode/v1
    )
    n_ctx: int = Field(16384, ge=256)  # explicit: llama-cpp-python's default of 512 is useless
    n_gpu_layers: int | Literal["auto"] = "auto"  # "auto": all that fit in free VRAM; 0: CPU only
    n_threads: int | None = Field(None, ge=1)
    flash_attn: bool = False
    cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"  # KV cache type (quantized needs flash_attn)
    yarn: bool = False  # YaRN x4 for inputs longer than 32k tokens (docs/models-and-gpus.md)
    draft_model: str | None = None  # speculative decoding: "ngram", a draft GGUF or REPO[:QUANT]
    draft: DraftSettings = Field(default_factory=DraftSettings)
    # max_tokens and reasoning_budget: from Limits (qwq_chat.app.sampling), per assistant reply
    max_tool_rounds: int = Field(8, ge=0)
    tools: list[str] = Field(default_factory=lambda: ["calculator"])
    system_prompt: str = ""
    sampling: Sampling = Field(default_factory=Sampling)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    ui: UISettings = Field(default_factory=UISettings)
    reasoning: ReasoningSettings = Field(default_factory=ReasoningSettings)  # effort, loop guard
    mcp: McpSettings = Field(default_factory=McpSettings)
    mcp_config: str | None = None  # a JSON file of servers in the `mcpServers` shape (--mcp-config)
    # The TOML file these settings were read from (where "always allow" is remembered).
    _config_path: Path | None = PrivateAttr(None)

    @field_validator("n_gpu_layers", mode="before")
    @classmethod
    def _gpu_layers(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlDict(settings_cls))

    @property
    def limits(self) -> Limits:
        return Limits(max_tokens=self.max_tokens, reasoning_budget=self.reasoning_budget)


def default_config_path() -> Path:
    return paths.config_dir() / CONFIG_FILE_NAME


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}. Fix that line.") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; `overrides` (e.g. from CLI options) whose value is None are ignored."""
    if config_path is not None:
        path = Path(config_path).expanduser()
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; check the --config path.")
    else:
        path = default_config_path()
    data = _read_toml(path) if path.is_file() else {}
    token = _toml_source.set(data)
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        settings._config_path = path
        return settings
    except ValidationError as exc:
        raise UserError(_describe(exc, path)) from None
    finally:
        _toml_source.reset(token)


def _describe(exc: ValidationError, path: Path) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("int", "literal")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see assets/default_config.toml)"
        problems.append(f"{key or '(root)'}: {msg} (got {err.get('input')!r})")
    return (
        f"invalid settings (file {path}, QWQ_CHAT_* environment variables or options): "
        + "; ".join(dict.fromkeys(problems))
    )
