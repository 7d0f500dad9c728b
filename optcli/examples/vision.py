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
from optcli.optional import OptionalPackage

if TYPE_CHECKING:
    from torch import nn

INSTALL_HINT = "pip install 'optcli[vision]' (here: pip install torch==2.14.1 torchvision==0.29.1)"
# What `optcli doctor` checks for this example.
REQUIRES = (OptionalPackage("torchvision", "torchvision", ("torchvision",), INSTALL_HINT),)


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


def mobilenet_v3_large(
    seed: int = 0, bn_batches: int = 8, bn_batch_size: int = 4, residual_scale: float = 0.1
) -> nn.Module:
    """Random-init MobileNetV3-Large made fit for INT8-vs-FP32 comparisons, the resnet50 way, in eval mode.

    As initialised by torchvision its eval-mode logits are all ~1e-10 and the same for every
    input (one top-1 class over 64 inputs). Fixes, estimated on seeded N(0,1) 224x224 inputs:
    BatchNorm running statistics re-estimated (cumulative average), the last BN gain of every
    residual inverted-residual block set to `residual_scale` (1.0: chaotic, a 1% input change
    moves the output to cosine 0.992 and simulated INT8 to 0.93; 0.1: 0.9992 and ~0.99), and the
    last classifier Linear's input centred (its bias absorbs -W @ mean): ~60 classes over 64 inputs.
    """
    import torch

    models = _torchvision_models("the MobileNetV3 example")
    from torchvision.models.mobilenetv3 import InvertedResidual

    torch.manual_seed(seed)
    model = models.mobilenet_v3_large(weights=None)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, InvertedResidual) and block.use_res_connect:
                block.block[-1][1].weight.fill_(residual_scale)  # Conv2dNormActivation: [conv, bn]
    _reestimate(model, model.classifier[-1], seed=seed, batches=bn_batches, batch_size=bn_batch_size)
    return model.eval()


def vit_b_16(seed: int = 0, batches: int = 4, batch_size: int = 4) -> nn.Module:
    """Random-init ViT-B/16 whose logits depend on the input, in eval mode.

    ViT has LayerNorm (per-token statistics, nothing to re-estimate) and pre-norm residual
    blocks, which at init are not chaotic (a 1% input change keeps the output at cosine 0.9999;
    scaling the residual branches as in resnet50 made simulated INT8 slightly worse, not better).
    What is degenerate is the head: torchvision zero-initialises it, so every logit is 0 for
    every input. So: the head gets N(0, 1/768) weights, and its input (the class token after the
    final LayerNorm, about half of whose energy is the same for every input) is centred on
    `batches` x `batch_size` seeded N(0,1) 224x224 images (the bias absorbs -W @ mean), as for
    resnet50's fc: every input of a batch of 24 gets its own top-1 class.
    """
    import math

    import torch

    models = _torchvision_models("the ViT-B/16 example")
    torch.manual_seed(seed)
    model = models.vit_b_16(weights=None)
    head = model.heads.head
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=1 / math.sqrt(head.in_features))
    _reestimate(model, head, seed=seed, batches=batches, batch_size=batch_size)
    return model.eval()


def _torchvision_models(purpose: str):
    try:
        require("torchvision", extra="vision", purpose=purpose)
    except MissingDependencyError as exc:
        raise MissingDependencyError(exc.message, hint=INSTALL_HINT) from exc
    from torchvision import models

    return models


def _reestimate(model: nn.Module, classifier: nn.Module, *, seed: int, batches: int, batch_size: int) -> None:
    """BN running stats from a train-mode pass (when the model has BN), then, in eval mode (no
    dropout, final BN statistics), `classifier`'s input centred by folding -W @ mean into its bias."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def images():
        generator = torch.Generator().manual_seed(seed + 1)
        return (torch.randn(batch_size, 3, 224, 224, generator=generator) for _ in range(batches))

    with torch.no_grad():
        if norms:
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None  # cumulative moving average: every batch counts equally
            model.train()
            try:
                for x in images():
                    model(x)
            finally:
                for norm in norms:
                    norm.momentum = 0.1  # torch's default, so later training behaves as usual
        model.eval()
        features: list[torch.Tensor] = []
        hook = classifier.register_forward_pre_hook(lambda _module, args: features.append(args[0]))
        try:
            for x in images():
                model(x)
        finally:
            hook.remove()
        classifier.bias -= classifier.weight @ torch.cat(features).mean(dim=0)
