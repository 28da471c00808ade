"""The announcement's streaming example, run unchanged but for base_url, api_key and the model name.

The example (the `openai` SDK, `stream=True`, `stream_options` uncommented as its comment says)
prints `delta.reasoning_content` under the reasoning heading, then `delta.content` under the answer
heading, then the usage from the last chunk, which has no choices. It runs in its own process
against `qwq-chat serve` (the real command, on the tiny QwQ model: a reasoning budget makes it
close `</think>`) and against the server on SmolLM2, a real model that does not reason.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from qwq_chat.app.config import load_settings
from qwq_chat.app.engines.llama_engine import LlamaEngine
from serve_helpers import running, wait_healthy

EXAMPLE = """
from openai import OpenAI
import os
# 初始化 OpenAI 客户端
client = OpenAI(
    api_key=os.getenv("QWQ_CHAT_API_KEY"),
    base_url=os.getenv("BASE_URL"),
)
reasoning_content = ""
content = ""
is_answering = False
completion = client.chat.completions.create(
    model=os.getenv("MODEL_NAME"),
    messages=[
        {"role": "user", "content": "Which is larger, 9.9 or 9.11?"}
    ],
    stream=True,
    # 取消注释下面这行,可以在最后一个 chunk 中返回 token 使用情况
    stream_options={
        "include_usage": True
    }
)
print("\\n" + "=" * 20 + "推理内容" + "=" * 20 + "\\n")
for chunk in completion:
    # 如果 chunk.choices 是空的,打印使用情况
    if not chunk.choices:
        print("\\n使用情况:")
        print(chunk.usage)
    else:
        delta = chunk.choices[0].delta
        # 打印推理内容
        if hasattr(delta, 'reasoning_content') and delta.reasoning_content is not None:
            print(delta.reasoning_content, end='', flush=True)
            reasoning_content += delta.reasoning_content
        else:
            if delta.content != "" and is_answering is False:
                print("\\n" + "=" * 20 + "内容" + "=" * 20 + "\\n")
                is_answering = True
            # 打印内容
            print(delta.content, end='', flush=True)
            content += delta.content
"""
# Not part of the example: hands what it collected to the test.
REPORT = '\nimport json\nprint("\\nREPORT " + json.dumps([reasoning_content, content]))\n'


def run_example(base_url: str, model: str, api_key: str) -> tuple[str, str, str]:
    env = {**os.environ, "BASE_URL": base_url, "MODEL_NAME": model, "QWQ_CHAT_API_KEY": api_key}
    done = subprocess.run(
        [sys.executable, "-c", EXAMPLE + REPORT], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out, _, report = done.stdout.rpartition("\nREPORT ")
    reasoning, content = json.loads(report)
    return out, reasoning, content


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_example_against_qwq_chat_serve_on_the_tiny_qwq(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    port = _free_port()
    env = {**os.environ, "QWQ_CHAT_MAX_TOKENS": "40", "QWQ_CHAT_SAMPLING__SEED": "0"}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "qwq_chat.app", "serve", "--model", str(tiny_gguf), "--n-ctx",
         "512", "--port", str(port), "--reasoning-budget", "8", "--api-key", "sk-local"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        log_text = (tmp_path / "serve.log").read_text
        wait_healthy(base, lambda: None if server.poll() is None else log_text(), 60)
        models = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer sk-local"})
        [model] = [m["id"] for m in models.json()["data"]]
        out, reasoning, content = run_example(base + "/v1", model, "sk-local")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert model == "model"  # the GGUF's file name
    assert reasoning.strip() and content.strip()
    assert reasoning.endswith(
        "Considering the limited time, I have to give the solution based on the thinking "
        "directly now.\n"
    )  # the budget closed the reasoning; the answer came after it
    for text in (reasoning, content):
        assert "<think>" not in text and "</think>" not in text
    heading_reasoning, heading_answer = "=" * 20 + "推理内容", "=" * 20 + "内容"
    assert out.index(heading_reasoning) < out.index(reasoning) < out.index(heading_answer)
    assert out.index(heading_answer) < out.index(content) < out.index("使用情况:")
    usage = out.split("使用情况:")[1]
    assert "completion_tokens=40" in usage and "reasoning_tokens=8" in usage


def test_the_example_against_the_server_on_smollm2(smollm_gguf: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("max_tokens = 24\n[sampling]\nseed = 0\n", encoding="utf-8")
    settings = load_settings(config)
    engine = LlamaEngine(smollm_gguf, n_ctx=1024)
    try:
        with running(engine, settings, model_id="smollm2", api_key="sk-local") as (url, _):
            out, reasoning, content = run_example(url, "smollm2", "sk-local")
    finally:
        engine.close()
    # SmolLM2 does not reason: everything is the answer, under the answer heading
    assert reasoning == "" and content.strip()
    assert out.index("=" * 20 + "内容") < out.index(content.strip()) < out.index("使用情况:")
    assert "reasoning_tokens=0" in out and "completion_tokens=24" in out
