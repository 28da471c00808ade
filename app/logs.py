"""The app's own log file (`qwq_chat.app.paths.log_dir()/qwq-chat.log`): warnings never go to the terminal.

Python's last-resort handler would print warnings on stderr, i.e. over a running TUI; the "qwq_chat.app"
logger writes to a file instead. llama.cpp's own log has its own file (see llama_engine).
"""

from __future__ import annotations

import logging

from qwq_chat.app import paths

LOG_FILE_NAME = "qwq-chat.log"
_configured = False


def setup_logging(level: int = logging.INFO) -> None:
    """Attach the file handler to the `qwq_chat.app` logger once per process."""
    global _configured
    if _configured:
        return
    handler = logging.FileHandler(paths.log_dir() / LOG_FILE_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("qwq_chat.app")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    _configured = True
