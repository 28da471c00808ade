"""Prompt rendering: identical to transformers' apply_chat_template; wrong QwQ copies avoided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qwq_chat.app.assets import chat_template
from qwq_chat.app.cli import cli
from qwq_chat.app.prompt import choose_template, opens_reasoning, render
from typer.testing import CliRunner

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Exact math <with> 'quotes' & ampersands",
            "parameters": {
                "type": "object",
                "properties": {"zeta": {"type": "string"}, "alpha": {"type": "number"}},
                "required": ["zeta"],
            },
        },
    }
]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "How many r's are in strawberry?"}],
    "system_multi_turn_with_reasoning": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Which is larger, 9.9 or 9.11?"},
        {"role": "assistant", "content": "Compare decimals...</think>\n\n9.9 is larger."},
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "Because 0.90 > 0.11."},
        {"role": "user", "content": "Thanks. ünïcödé 你好"},
    ],
    "tools_and_results": [
        {"role": "user", "content": "What is 2^64 and 3^40?"},
        {
            "role": "assistant",
            "content": "I will compute.</think>\n\nLet me use the tool.",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "calculator", "arguments": {"zeta": "2**64", "alpha": 1}},
                },
                {
                    "type": "function",
                    "function": {"name": "calculator", "arguments": {"zeta": "3^40"}},
                },
            ],
        },
        {"role": "tool", "content": "18446744073709551616"},
        {"role": "tool", "content": "12157665459056928801"},
        {
            "role": "assistant",
            "content": "Both computed.</think>\n\nThey are 18446744073709551616 and 12157665459056928801.",
        },
        {"role": "user", "content": "<b>ok</b> & done"},
    ],
}


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_checkpoint: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.mark.parametrize("name", list(CONVERSATIONS))
@pytest.mark.parametrize("with_tools", [False, True])
def test_identical_to_transformers(hf_tokenizer, name: str, with_tools: bool) -> None:
    messages = CONVERSATIONS[name]
    tools = TOOLS if with_tools else None
    expected = hf_tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=True
    )
    assert render(messages, tools=tools) == expected
    assert expected.endswith("<|im_start|>assistant\n<think>\n")
    if with_tools:  # key order kept, nothing HTML-escaped
        assert '"zeta": {"type": "string"}, "alpha"' in expected and "<with> 'quotes' &" in expected


def test_history_reasoning_is_stripped_by_the_template() -> None:
    text = render(CONVERSATIONS["system_multi_turn_with_reasoning"])
    assert "Compare decimals" not in text and "9.9 is larger." in text


def test_template_choice() -> None:
    upstream = chat_template()
    assert choose_template(upstream).origin == "gguf"
    assert choose_template(None).origin == "shipped"

    llama_cpp_copy = upstream.replace(
        "{{- '<|im_start|>assistant\\n<think>\\n' }}",
        "{{- '<|im_start|>assistant\\n<think>\\n' }}\n"
        "    {%- if not enable_thinking -%}{{- '</think>' -}}{%- endif -%}",
    )
    assert llama_cpp_copy != upstream
    # Rendered as llama-cpp-python would (enable_thinking never set) it switches thinking off:
    assert render(CONVERSATIONS["single"], template=llama_cpp_copy).endswith("</think>")
    chosen = choose_template(llama_cpp_copy)
    assert chosen.origin == "shipped" and "enable_thinking" in chosen.reason
    assert render(CONVERSATIONS["single"], template=chosen.source).endswith("<think>\n")

    old_copy = upstream.replace(
        "{{- '<|im_start|>assistant\\n<think>\\n' }}", "{{- '<|im_start|>assistant\\n' }}"
    )
    assert old_copy != upstream
    chosen = choose_template(old_copy)
    assert chosen.origin == "shipped" and "old copy" in chosen.reason

    chatml = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
        " + '<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    chosen = choose_template(chatml)
    assert chosen.origin == "gguf" and chosen.source == chatml
    prompt = render(CONVERSATIONS["single"], template=chosen.source)
    assert prompt.endswith("<|im_start|>assistant\n") and not opens_reasoning(prompt)


def test_raise_exception_in_template_is_a_user_error() -> None:
    from qwq_chat.app.errors import UserError

    with pytest.raises(UserError, match="roles must alternate"):
        render(
            [{"role": "user", "content": "x"}],
            template="{{ raise_exception('roles must alternate') }}",
        )


def test_render_prompt_command(tmp_path: Path) -> None:
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"messages": CONVERSATIONS["tools_and_results"]}))
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    result = CliRunner().invoke(cli, ["render-prompt", str(conv), "--tools", str(tools)])
    assert result.exit_code == 0, result.output
    assert result.stdout == render(CONVERSATIONS["tools_and_results"], tools=TOOLS)


def test_render_prompt_with_a_non_qwq_gguf_uses_its_template(
    smollm_gguf: Path, tmp_path: Path
) -> None:
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(CONVERSATIONS["single"]))
    result = CliRunner().invoke(cli, ["render-prompt", str(conv), "--model", str(smollm_gguf)])
    assert result.exit_code == 0, result.output
    assert "You are a helpful AI assistant named SmolLM" in result.stdout  # its own system default
    assert result.stdout.endswith("<|im_start|>assistant\n")


def test_render_prompt_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": "nope"}')
    from qwq_chat.app.cli import main  # noqa: F401  (UserError handling lives in main)
    from qwq_chat.app.errors import UserError

    result = CliRunner().invoke(cli, ["render-prompt", str(bad)])
    assert isinstance(result.exception, UserError) and "list of messages" in str(result.exception)
