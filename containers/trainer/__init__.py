"""The trainer job (GPU, NVIDIA PyTorch container): transformers + peft + trl on prepared data."""
