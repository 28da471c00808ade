"""Tools the model may call while it thinks (QwQ's <tool_call> format). See base.py."""
