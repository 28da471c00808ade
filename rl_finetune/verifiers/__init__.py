"""Verifiers: functions from a model output (and a reference) to a reward, usable without torch.

- `math.verify(completion, gold)`: answer accuracy on top of math-verify, with hard timeouts.
- `rules`: format checks, IFEval-style instruction checks, DAPO's soft overlong punishment.
- `code`: test cases run through the sandbox (see `qwq_chat.app.sandbox`).

Importing this package is cheap; math-verify and sympy load only in the worker processes.
"""
