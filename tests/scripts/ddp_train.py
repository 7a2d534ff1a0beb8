"""Run by tests/test_ddp.py under ``torchrun --nproc_per_node 2``: a few DDP training steps on CPU (gloo).

Each rank writes the sum and a fingerprint of its parameters after training; with gradients synchronised they
are identical on both ranks even though each rank saw different batches.
"""

import json
import sys

import datasets
import torch
import torch.distributed as dist

from fastrank import CrossEncoder
from fastrank.losses import BinaryCrossEntropyLoss
from fastrank.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

model_dir, out_dir = sys.argv[1], sys.argv[2]
model = CrossEncoder(model_dir, device="cpu", max_length=32)
rows = {"query": [f"query {i}" for i in range(64)], "document": [f"document {i % 7}" for i in range(64)],
        "label": [float(i % 2) for i in range(64)]}
args = CrossEncoderTrainingArguments(output_dir=out_dir, max_steps=4, per_device_train_batch_size=4,
                                     learning_rate=1e-3, save_strategy="no", use_cpu=True, ddp_backend="gloo",
                                     disable_tqdm=True, seed=0)
trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(rows),
                              loss=BinaryCrossEntropyLoss(model))
trainer.train()
params = torch.cat([p.detach().flatten() for p in model.parameters()])
rank = dist.get_rank()
with open(f"{out_dir}/rank{rank}.json", "w") as f:
    json.dump({"rank": rank, "world": dist.get_world_size(), "sum": float(params.double().sum()),
               "first": params[:16].tolist(), "steps": trainer.state.global_step}, f)
