"""What a quantizer declares: its name, precisions and calibration methods, optional packages, and a
quantize function. The recipe's `quantization.quantizer` literal and its checks are built from these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from optcli.backends.base import Unavailable
from optcli.errors import UserInputError
from optcli.optional import OptionalPackage

if TYPE_CHECKING:  # settings.py reads the registry: a runtime import of it here would be a cycle
    from optcli.quantization.settings import QuantizationSettings

# (src, dst, settings, batches, input_names, *, cache=None) -> details for the report
QuantizeFn = Callable[..., dict[str, Any]]
CalibrationMethod = Literal["auto", "minmax", "entropy", "percentile", "mse", "distribution"]
ALL_METHODS = frozenset(get_args(CalibrationMethod))


def always_available(settings: QuantizationSettings) -> Unavailable | None:
    return None


def accept_all(settings: QuantizationSettings) -> None:
    return None


@dataclass(frozen=True)
class Quantizer:
    """A registered quantizer. `quantize(src, dst, settings, batches, input_names)` writes `dst`
    (an ONNX model with Q/DQ nodes) and returns details for the report.

    `precisions` and `methods` (values of `calibration.method`) are what it supports; recipe
    validation refuses anything else, naming the quantizer. `refuse` raises UserInputError for other
    settings it cannot honour; `requires` lists its optional packages (what `optcli doctor` checks)."""

    name: str
    quantize: QuantizeFn
    precisions: frozenset[str]
    methods: frozenset[str] = ALL_METHODS
    unavailable: Callable[[QuantizationSettings], Unavailable | None] = always_available
    refuse: Callable[[QuantizationSettings], Any] = accept_all
    requires: tuple[OptionalPackage, ...] = ()
    summary: str = ""

    def check(self, settings: QuantizationSettings) -> None:
        """Raise UserInputError when `settings` ask for what this quantizer does not do."""
        if settings.precision not in self.precisions:
            raise UserInputError(
                f"quantization.precision: the {self.name} quantizer does not support "
                f"{settings.precision} (it supports {', '.join(sorted(self.precisions))})",
                hint="choose another precision or quantization.quantizer",
            )
        method = settings.calibration.method
        if method not in self.methods:
            raise UserInputError(
                f"quantization.calibration.method '{method}' is not available with quantizer: {self.name} "
                f"(it calibrates with {', '.join(sorted(self.methods))})",
                hint="use one of those methods, or another quantization.quantizer",
            )
        self.refuse(settings)
