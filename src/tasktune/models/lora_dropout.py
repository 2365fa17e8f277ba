"""LoRA input dropout that is cheap on CPUs: the keep mask from 16 random bits per element.

peft drops out each LoRA module's input with `nn.Dropout`. On a CPU, drawing its Bernoulli mask
costs more than the adapter's own matrix products: in a gemma-3-270m LoRA step (all-linear, 2 x 512
tokens, 2 AVX2 cores) the 126 dropout calls took 9-15% of the step, 4-14 ms each, because torch's CPU
`bernoulli_` draws one random number per element. Here one 64-bit draw serves four elements
(16 bits each): a dropout call takes a third of the time and the LoRA step 1.12x less
(`bench/lora_dropout_speed.py`, bench/RESULTS.md); the mask keeps an element with probability
1 - round(p * 65536) / 65536, within 1e-5 of 1 - p. No library offers this, hence the module.
On GPUs torch's fused dropout is already fast and is used unchanged.

Example:
    model = get_peft_model(model, LoraConfig(lora_dropout=0.05, ...))
    swap_lora_dropout(model)      # same p, same scaling by 1 / (1 - p), eval mode still a no-op
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16


class CheapDropout(nn.Module):
    """Inverted dropout (x * mask / (1 - p) in training, x in eval) with 16-bit random draws on CPU.

    Example: CheapDropout(0.05)(torch.ones(4, 640)) -> about 5% zeros, the rest 1 / 0.95
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        # int16 draws are uniform on [-32768, 32767]: those below this threshold are dropped.
        self.threshold = round(p * _LEVELS) - _LEVELS // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return (x * keep).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def swap_lora_dropout(model) -> int:
    """Replace every LoRA input `nn.Dropout` with `CheapDropout` of the same p; returns how many.

    Modules without dropout (peft puts `nn.Identity` there for p = 0) are left alone.
    """
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, drop in dropouts.items():
            if type(drop) is nn.Dropout and drop.p > 0:
                dropouts[name] = CheapDropout(drop.p)
                swapped += 1
    return swapped
