"""Peak RSS of a 0.5B-shaped (Qwen2.5-0.5B config) random model: rollouts or one training step.

    python benchmarks/memory_0p5b.py rollout float32   # native engine, 16 rows x (64 + 32) tokens
    python benchmarks/memory_0p5b.py train float32     # one AdamW step on 4 x 128 tokens (bfloat16: autocast)
    python benchmarks/memory_0p5b.py rollout bfloat16 4  # 4 new tokens: where bf16 is emulated (AVX2) 32 take long
    python benchmarks/memory_0p5b.py train bfloat16 16   # 4 x 16 tokens, for the same reason

The peak is the weights, the engine's copy and the optimizer state; a few decode steps more or less hardly move it.
"""
import resource, sys, time
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from r1lab.rollout.factory import make_engine
from r1lab.rollout.base import SamplingParams
from r1lab.models import tiny_tokenizer

mode, dtype = sys.argv[1], getattr(torch, sys.argv[2])
length = int(sys.argv[3]) if len(sys.argv) > 3 else 32 if mode == "rollout" else 128  # new tokens / sequence
torch.set_num_threads(1)
cfg = AutoConfig.for_model("qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                           num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
# rollouts of a bf16 model build it in bf16; training keeps fp32 master weights (autocast computes in bf16)
model = AutoModelForCausalLM.from_config(cfg, dtype=dtype if mode == "rollout" else torch.float32)
n = sum(p.numel() for p in model.parameters())
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
base = rss()
tok = tiny_tokenizer()
if mode == "rollout":
    engine = make_engine("native", model.eval(), tok, max_batch_size=16)
    prompts = [[5 + i] * 64 for i in range(16)]
    engine.generate(prompts, SamplingParams(max_new_tokens=length, temperature=1.0))
else:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 151936, (4, length))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        logits = model(ids).logits
    loss = torch.log_softmax(logits.float(), -1).mean()
    loss.backward(); opt.step()
print(f"{mode} {sys.argv[2]}: params {n/1e6:.0f}M, rss after init {base:.2f} GB, peak {rss():.2f} GB")
