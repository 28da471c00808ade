"""Format work: Hugging Face safetensors -> GGUF, llama.cpp quantization, parity checks. No UI."""
