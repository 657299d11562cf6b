"""Bridges to other training stacks: `tandem.integrations.hf` steers a Hugging Face `Trainer` by TANDEM."""
