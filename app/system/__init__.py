"""What inspects the machine: GPUs and their memory, RAM, CPU features, the llama.cpp build.

One home for these probes, so the engine's GPU-layer plan, the download size advice (hub) and
`qwq-chat doctor` see the same facts. Each probe is cheap, imports what it needs inside, and never
raises: a missing tool or library is an answer, not an error.
"""
