"""`python -m qwq_chat.rl_finetune.launch CONFIG.toml [STAGE...]`: the training entry point for
`accelerate launch` (multi-GPU / multi-node with the DeepSpeed ZeRO-3 or FSDP files in
assets/rl/accelerate/); `qwq-chat rl train` runs the same code in one process."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from qwq_chat.app.errors import UserError
    from qwq_chat.rl_finetune.config import load_config
    from qwq_chat.rl_finetune.pipeline import train

    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m qwq_chat.rl_finetune.launch CONFIG.toml [STAGE...]")
    try:
        train(load_config(args[0]), only=args[1:] or None)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
