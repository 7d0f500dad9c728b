"""Images from a folder, preprocessed as the recipe declares (resize, center crop, scale, normalize, layout).

Class labels come from sub-folder names (ImageNet layout: <root>/<class>/<image>), sorted, when
`labels_from_folders` is set. Images are decoded one batch at a time.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from optcli.calibration.base import Batch, DataSourceKind, SourceContext
from optcli.errors import UserInputError, require
from optcli.optional import OptionalPackage
from optcli.strict import StrictModel

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImagesSource(StrictModel):
    type: Literal["images"] = "images"
    path: str = Field(
        description="A folder (searched recursively) or a glob of image files, relative to the recipe."
    )
    input: str | None = Field(None, description="Input the images feed. Default: the model's only input.")
    resize: int = Field(256, ge=1, description="Resize the shorter side to this many pixels.")
    crop: int = Field(224, ge=1, description="Then center-crop a square of this size.")
    scale: float = Field(1 / 255, description="Multiply pixel values (0..255) by this first.")
    mean: list[float] = Field(
        default_factory=lambda: [0.485, 0.456, 0.406], description="Per-channel mean (RGB)."
    )
    std: list[float] = Field(
        default_factory=lambda: [0.229, 0.224, 0.225], description="Per-channel std (RGB)."
    )
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Array layout the model takes.")
    labels_from_folders: bool = Field(
        False, description="Label = index of the image's parent folder, sorted."
    )
    chunk: int = Field(32, ge=1, description="Images decoded per chunk.")


def image_files(options: ImagesSource, ctx: SourceContext) -> list[Path]:
    root = Path(options.path) if Path(options.path).is_absolute() else ctx.base_dir / options.path
    if root.is_dir():
        files = [p for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(p) for p in sorted(glob.glob(str(root))) if p.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise UserInputError(
            f"{ctx.field}.path: no images ({', '.join(IMAGE_SUFFIXES)}) under '{options.path}'"
        )
    return files


def preprocess(path: Path, options: ImagesSource) -> np.ndarray:
    image_module = require("PIL.Image", package="pillow", purpose="the images data source")
    with image_module.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        ratio = options.resize / min(width, height)
        image = image.resize(
            (max(1, round(width * ratio)), max(1, round(height * ratio))), image_module.Resampling.BILINEAR
        )
        width, height = image.size
        left, top = (width - options.crop) // 2, (height - options.crop) // 2
        image = image.crop((left, top, left + options.crop, top + options.crop))
        pixels = np.asarray(image, dtype=np.float32) * options.scale
    pixels = (pixels - np.array(options.mean, np.float32)) / np.array(options.std, np.float32)
    return pixels.transpose(2, 0, 1) if options.layout == "NCHW" else pixels


def _decoded(path: Path, options: ImagesSource, ctx: SourceContext) -> np.ndarray:
    try:
        return preprocess(path, options)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: unreadable, truncated or not an image
        raise UserInputError(f"{ctx.field}.path: cannot decode image '{path}': {exc}") from exc


def open_source(options: ImagesSource, ctx: SourceContext) -> Iterator[Batch]:
    names = [spec.name for spec in ctx.resolver.inputs]
    target = options.input or (names[0] if len(names) == 1 else None)
    if target not in names:
        raise UserInputError(f"{ctx.field}.input: name the input the images feed (one of {names})")
    files = image_files(options, ctx)
    classes = sorted({f.parent.name for f in files})
    for start in range(0, len(files), options.chunk):
        chunk = files[start : start + options.chunk]
        batch: Batch = {target: np.stack([_decoded(f, options, ctx) for f in chunk])}
        if options.labels_from_folders and ctx.labels_key:
            batch[ctx.labels_key] = np.array([classes.index(f.parent.name) for f in chunk], dtype=np.int64)
        yield batch


PILLOW = OptionalPackage("pillow", "PIL.Image", ("pillow",), "pip install pillow")
SOURCE = DataSourceKind(
    name="images",
    options=ImagesSource,
    open=open_source,
    files=image_files,
    user_errors=(OSError, ValueError),
    requires=(PILLOW,),
)
