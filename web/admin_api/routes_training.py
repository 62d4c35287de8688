"""Start, watch, cancel fine-tuning runs; settings (issue 5)."""
