"""The peer of `bench/compare.py --suite classification`: sequence classification with a plain
`transformers.Trainer`, written the way the library's `run_classification.py` example does it.

Every review padded to --max-length, a new sequence-classification head (`AutoModelForSequenceClassification`),
LoRA from peft (task type SEQ_CLS: the head trains in full), fp32 (--bf16: autocast), AdamW with linear decay
after warmup.
Reads JSONL rows `{text, label}` (label 0/1); writes JSON with the Trainer's own train samples/s, the
test accuracy and each test row's correctness (for bootstrap intervals).

Run: python bench/peer_classification.py MODEL_DIR train.jsonl test.jsonl out.json [--max-length 128] [--bf16]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("model", "train", "test", "out"):
        p.add_argument(name)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="TrainingArguments(bf16=True): autocast, as a user with bf16 units would")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    data = load_dataset("json", data_files={"train": a.train, "test": a.test})
    data = data.map(lambda b: tok(b["text"], padding="max_length", max_length=a.max_length, truncation=True),
                    batched=True).rename_column("label", "labels")
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.05,
                                             target_modules="all-linear"))
    args = TrainingArguments(output_dir=a.out + ".trainer", per_device_train_batch_size=a.batch_size,
                             per_device_eval_batch_size=a.batch_size, learning_rate=a.learning_rate,
                             num_train_epochs=1, warmup_steps=0.1,  # transformers 5: a float < 1 is a ratio
                             lr_scheduler_type="linear", save_strategy="no", bf16=a.bf16,
                             report_to=[], logging_steps=10, seed=a.seed, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=data["train"])
    train = trainer.train().metrics
    logits = trainer.predict(data["test"]).predictions
    correct = (np.argmax(logits, -1) == np.array(data["test"]["labels"])).astype(int).tolist()
    with open(a.out, "w") as f:
        json.dump({"train_samples_per_second": train["train_samples_per_second"],
                   "train_runtime": train["train_runtime"], "accuracy": sum(correct) / len(correct),
                   "correct": correct}, f)


if __name__ == "__main__":
    main()
