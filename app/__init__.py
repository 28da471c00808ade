"""qwq-chat: a local reasoning-model workstation for QwQ-32B."""

__version__ = "0.1.0"
