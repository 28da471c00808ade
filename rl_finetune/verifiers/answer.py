"""Find the final answer in a model's output: drop the reasoning, then take the boxed answer.

Pure string work, cheap on megabytes of text (one linear scan), shared by the math verifier and the
rule verifiers.
"""

from __future__ import annotations

import re

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MAX_ANSWER_CHARS = 2_000  # a boxed answer longer than this is not an answer, it is a dump

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL_RE = re.compile(
    r"(?:final answer|\banswer)\s*(?:is|:)?\s*[:=]?\s*(.+?)(?:\n|$)", re.IGNORECASE
)


def strip_reasoning(completion: str) -> str | None:
    """The part after the reasoning: text after the last `</think>`.

    QwQ's prompt ends with `<think>\\n`, so completions show only the closing tag. A completion that
    opens `<think>` but never closes it was cut off while reasoning: it has no answer (None). Text
    with no think tags at all (a non-reasoning model) is all answer.
    """
    close = completion.rfind(THINK_CLOSE)
    if close >= 0:
        return completion[close + len(THINK_CLOSE) :]
    if THINK_OPEN in completion:
        return None
    return completion


def boxed_contents(text: str) -> list[str]:
    r"""Contents of every `\boxed{...}` / `\fbox{...}` in order, braces matched (unclosed ones dropped)."""
    out: list[str] = []
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if m is None:
            return out
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            i += 1
        if depth:
            return out  # unclosed: nothing after it can be a complete box either
        out.append(text[m.end() : i - 1].strip())
        pos = i


def final_answer(completion: str) -> str | None:
    r"""The final answer as a string, or None when there is none.

    1. Drop the reasoning (see `strip_reasoning`).
    2. Boxed answers: the distinct contents of all boxes after the reasoning, joined by ", ". One box
       is the usual case; several different boxes are either a multi-part answer ("x=1 and x=2") or a
       hedge ("\boxed{3} or \boxed{7}") and are compared as a whole, so a hedge never matches a single
       gold answer.
    3. No box: the text after "final answer is" / "answer:" on the last such line (an opened but
       unclosed box means the output was cut off: no answer).
    4. Otherwise the last non-empty line, if short.
    """
    region = strip_reasoning(completion)
    if region is None:
        return None
    boxes = [b for b in dict.fromkeys(boxed_contents(region)) if b]
    if boxes:
        answer = ", ".join(boxes)
        return answer if len(answer) <= MAX_ANSWER_CHARS else None
    if _BOX_RE.search(region):
        return None  # a box was opened and never closed: the output was cut off
    tail = region[-MAX_ANSWER_CHARS * 4 :]
    matches = list(_FINAL_RE.finditer(tail))
    if matches:
        answer = matches[-1].group(1).strip().rstrip(".").strip()
        return answer.strip("$ ").strip() or None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if lines and len(lines[-1]) <= 200:
        return lines[-1].rstrip(".").strip("$ ").strip() or None
    return None
