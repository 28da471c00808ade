"""Engines: llama.cpp (default), OpenAI-compatible HTTP, transformers. One protocol, see base.py."""
