"""`qwq-chat serve`: the OpenAI-compatible server over the chat session (docs/serve.md)."""
