"""Supervised fine-tuning: reply-only loss, packed samples without cross-attention, resumable runs."""
from r1lab.sft.config import SFTConfig, SFTDataConfig, SFTRunConfig, SFTTrainConfig
from r1lab.sft.data import encode_chat, encode_prompt_completion, load_samples
from r1lab.sft.packing import IGNORE, PackedBatch, Sample, micro_batches, pack, plan_rows
from r1lab.sft.trainer import train_sft

__all__ = ["IGNORE", "PackedBatch", "SFTConfig", "SFTDataConfig", "SFTRunConfig", "SFTTrainConfig", "Sample",
           "encode_chat", "encode_prompt_completion", "load_samples", "micro_batches", "pack", "plan_rows",
           "train_sft"]
