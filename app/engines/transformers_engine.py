"""transformers engine: a Hugging Face checkpoint directory, as in the seed's first example.

torch and transformers are imported only when this engine is created (the chat app must not pay
for them otherwise). `model.generate` runs in its own thread and feeds a `TextIteratorStreamer`;
`cancel()` is honoured per token through a `StoppingCriteria`. The prompt is rendered by
`qwq_chat.app.prompt` with the checkpoint's template (or the shipped QwQ one, same rules as for GGUFs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qwq_chat.app.engine_protocol import Chunk, unsupported_options
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Stats
from qwq_chat.app.prompt import choose_template, opens_reasoning, render
from qwq_chat.app.sampling import Sampling


class TransformersEngine:
    name = "transformers"

    def __init__(self, checkpoint_dir: str | Path, device: str | None = None) -> None:
        path = Path(checkpoint_dir).expanduser()
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise UserError(
                "the transformers backend needs torch and transformers: pip install 'qwq-chat[hf]'"
            ) from None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # never draw over the TUI
        self._torch = torch
        self.path = path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").to(self.device)
        self.model.eval()
        self.template = choose_template(getattr(self.tokenizer, "chat_template", None))
        self.prompt_opens_reasoning = True
        self._cancel = threading.Event()

    load_warning = None

    @property
    def placement(self) -> str:
        return "GPU (transformers)" if self.device != "cpu" else "CPU (transformers)"

    @property
    def description(self) -> str:
        return f"{self.path.name}: {self.placement}, template: {self.template.origin}"

    def render_prompt(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> str:
        return render(messages, tools=tools, template=self.template.source)

    def stream(
        self,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        max_tokens: int,
        tools: list[dict[str, Any]] | None = None,
        prefill: str = "",
        grammar: Any = None,
        raw_prompt: str | None = None,
    ) -> Iterator[Chunk]:
        unsupported_options(self.name, grammar, raw_prompt)
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel = self._cancel
        cancel.clear()
        prompt = self.render_prompt(messages, tools)
        self.prompt_opens_reasoning = opens_reasoning(prompt)
        inputs = self.tokenizer(prompt + prefill, return_tensors="pt", add_special_tokens=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        n_prompt = int(inputs["input_ids"].shape[1])
        streamer = _CountingStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return cancel.is_set()

        if sampling.seed is not None:
            self._torch.manual_seed(sampling.seed)
        gen_kwargs: dict[str, Any] = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=max_tokens,
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repetition_penalty=sampling.repeat_penalty,
            stopping_criteria=StoppingCriteriaList([_Cancel()]),
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        if sampling.min_p > 0:
            gen_kwargs["min_p"] = sampling.min_p
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    result["output"] = self.model.generate(**gen_kwargs)
            except Exception as exc:  # surfaced in the caller's thread below
                result["error"] = exc
                streamer.end()

        started = time.perf_counter()
        first_at: float | None = None
        thread = threading.Thread(target=run, name="transformers-generate", daemon=True)
        thread.start()
        completed = False
        try:
            for text in streamer:
                first_at = first_at or time.perf_counter()
                yield Chunk(text, tokens=streamer.take_count())
            completed = True
            rest = streamer.take_count()  # tokens whose text was held back (special tokens)
            if rest:
                yield Chunk(tokens=rest)
        finally:
            if not completed:  # the consumer stopped listening: stop generating too
                cancel.set()
            thread.join()
        if "error" in result:
            raise result["error"]
        output = result["output"]
        generated = int(output.shape[1]) - n_prompt
        eos = self.tokenizer.eos_token_id
        last = int(output[0, -1]) if generated else None
        if cancel.is_set():
            finish = "cancelled"
        elif last is not None and last == eos:
            finish = "stop"
        else:
            finish = "length" if generated >= max_tokens else "stop"
        elapsed = time.perf_counter() - (first_at or started)
        yield Chunk(
            stats=Stats(
                prompt_tokens=n_prompt,
                completion_tokens=generated,
                prompt_tokens_processed=n_prompt,
                time_to_first_token_s=(first_at - started) if first_at else None,
                tokens_per_second=(generated / elapsed) if elapsed > 0 and generated else None,
            ),
            finish_reason=finish,
        )

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.model = None


def _CountingStreamer(tokenizer: Any, **kwargs: Any) -> Any:  # noqa: N802 (a class factory)
    """transformers' TextIteratorStreamer that also counts the tokens behind each text piece.

    The streamer yields text at word boundaries, so pieces are not tokens; budgets need tokens.
    """
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, **kwargs)
            self._count = 0
            self._count_lock = threading.Lock()
            self._prompt_seen = not kwargs.get("skip_prompt", False)

        def put(self, value: Any) -> None:
            if self._prompt_seen:  # the first put() is the prompt when skip_prompt is set
                with self._count_lock:
                    self._count += int(value.numel())
            self._prompt_seen = True
            super().put(value)

        def take_count(self) -> int:
            with self._count_lock:
                count, self._count = self._count, 0
            return count

    return CountingStreamer()
