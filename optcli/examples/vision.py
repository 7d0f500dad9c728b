"""ResNet-50 (torchvision) with random weights, made fit for INT8-vs-FP32 accuracy comparisons.

No pretrained weights can be downloaded here, so the model is randomly initialised. As is, it is
useless for accuracy comparisons: torchvision's init leaves every BatchNorm at running_mean=0,
running_var=1, so in eval mode activations blow up block after block and the logits are almost
the same for every input (one top-1 class for 64 random inputs), which makes top-1 agreement
between engines trivially 100%. Three cheap fixes, estimated from seeded random batches:

* BatchNorm: a few batches in train mode with momentum=None (a cumulative average) set the
  running statistics to the real ones, so activations stay normalised.
* Classifier: the pooled features are post-ReLU and share a large positive mean, so W @ mean,
  the same for every input, still decides top-1 (3-4 classes over 64 inputs). Folding
  -W @ mean into the fc bias centres the features: ~60 classes over 64 inputs.
* Residual branches: with unit BN gain on every branch the random network is chaotic; a 1%
  perturbation in the first layer (INT8 rounding) grows to an output cosine of ~0.4. Trained
  ResNets are not like that. Scaling each bottleneck's last BN gain to `residual_scale` keeps
  the skip path dominant, as in trained networks, and INT8 error then only adds up (cosine
  ~0.99). Use residual_scale=1.0 for torchvision's plain init.

Needs torchvision: pip install 'optcli[vision]'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optcli.errors import MissingDependencyError, require

if TYPE_CHECKING:
    from torch import nn

INSTALL_HINT = "pip install 'optcli[vision]' (here: pip install torch==2.14.1 torchvision==0.29.1)"


def resnet50(
    seed: int = 0, bn_batches: int = 8, bn_batch_size: int = 4, residual_scale: float = 0.1
) -> nn.Module:
    """Random-init ResNet-50 with statistics estimated on seeded N(0,1) 224x224 inputs, in eval mode.

    `seed` fixes both the weights and the estimation inputs, so every call returns the same model.
    `bn_batches` x `bn_batch_size` images run through the model once, without gradients.
    """
    import torch

    try:
        require("torchvision", extra="vision", purpose="the ResNet-50 example")
    except MissingDependencyError as exc:
        raise MissingDependencyError(exc.message, hint=INSTALL_HINT) from exc
    from torchvision import models

    torch.manual_seed(seed)
    model = models.resnet50(weights=None)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, models.resnet.Bottleneck):
                block.bn3.weight.fill_(residual_scale)
    _estimate_statistics(model, seed=seed, batches=bn_batches, batch_size=bn_batch_size)
    return model.eval()


def _estimate_statistics(model: nn.Module, *, seed: int, batches: int, batch_size: int) -> None:
    """Refill BN running stats (cumulative average) and centre the classifier's input features."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
    features: list[torch.Tensor] = []
    hook = model.fc.register_forward_pre_hook(lambda _module, args: features.append(args[0]))
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    try:
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn(batch_size, 3, 224, 224, generator=generator))
            model.fc.bias -= model.fc.weight @ torch.cat(features).mean(dim=0)
    finally:
        hook.remove()
        for norm in norms:
            norm.momentum = 0.1  # torch's default, so later training behaves as usual
