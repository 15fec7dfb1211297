"""The trainer job (GPU, NVIDIA PyTorch container): transformers Trainer + peft on prepared data."""
