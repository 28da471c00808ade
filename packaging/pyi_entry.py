"""Entry script of the standalone binary: the `qwq-chat` console script, plus one clear error.

The binary leaves the training stack out (see packaging/qwq-chat.spec). A command that needs it
(`verify`'s logit parity, `rl ...`) would otherwise die with a ModuleNotFoundError traceback; here it
gets one line saying what is missing and how to get it.
"""

from __future__ import annotations

import sys

# Left out of the bundle on purpose; qwq-chat.spec reads this list as its `excludes`.
LEFT_OUT = (
    "torch",
    "torchvision",
    "torchaudio",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "vllm",
    "bitsandbytes",
    "deepspeed",
    "safetensors",
    "tensorboard",
    "tensorflow",
    "matplotlib",
    "pandas",
    "pyarrow",
    "scipy",
    "sklearn",
    "IPython",
    "jupyter",
    "notebook",
    "tkinter",
    "pytest",
)


def run() -> None:
    from qwq_chat.app.cli import main

    try:
        main()
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in LEFT_OUT:
            raise
        sys.stderr.write(
            f"error: this command needs {package}, which the standalone qwq-chat binary does not "
            "include. Install qwq-chat with pip for it: pip install 'qwq-chat[train]' "
            "(README, Installing).\n"
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    run()
