"""RL fine-tuning the way QwQ was made: verifiers, a sandboxed code server, GRPO stages, re-export."""
