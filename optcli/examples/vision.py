"""ResNet-50 (torchvision) with random weights whose BatchNorm statistics are re-estimated.

No pretrained weights can be downloaded here, so the model is randomly initialised. torchvision's
init leaves every BatchNorm with running_mean=0 and running_var=1 (and zero-inits the last BN
gamma of each residual block), so in eval mode activations grow or collapse layer after layer and
the logits come out nearly the same for every input: top-1 is one class for almost all inputs,
and top-1 agreement between engines is trivially 100%. Running a few random batches in train mode
with momentum=None (a cumulative average) sets the running statistics to the real ones, which
keeps activations normalised and makes the logits depend on the input, so INT8-vs-FP32
comparisons (top-1 agreement, cosine) measure something.

Needs torchvision: pip install 'optcli[vision]'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optcli.errors import require

if TYPE_CHECKING:
    from torch import nn

INSTALL_HINT = "pip install 'optcli[vision]' (here: pip install torch==2.14.1 torchvision==0.29.1)"


def resnet50(seed: int = 0, bn_batches: int = 8, bn_batch_size: int = 16) -> nn.Module:
    """Random-init ResNet-50 with BatchNorm running stats estimated on seeded N(0,1) 224x224 inputs.

    `seed` fixes both the weights and the BN-estimation inputs, so the model is the same on every
    call. `bn_batches` x `bn_batch_size` images are run in train mode (no gradients); the model is
    returned in eval mode.
    """
    import torch

    from optcli.errors import MissingDependencyError

    try:
        models = require("torchvision.models", extra="vision", purpose="the ResNet-50 example")
    except MissingDependencyError as exc:
        raise MissingDependencyError(exc.message, hint=INSTALL_HINT) from exc

    torch.manual_seed(seed)
    model = models.resnet50(weights=None)
    _reestimate_batchnorm(model, seed=seed, batches=bn_batches, batch_size=bn_batch_size)
    return model.eval()


def _reestimate_batchnorm(model: nn.Module, *, seed: int, batches: int, batch_size: int) -> None:
    """Reset BN running stats and refill them with a cumulative average over random batches."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, 3, 224, 224, generator=generator))
    for norm in norms:
        norm.momentum = 0.1  # torch's default, so later fine-tuning behaves as usual
