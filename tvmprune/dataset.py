"""Data sets for measuring accuracy: the built-in digits, an ImageFolder, or a user factory.

* ``builtin`` (alias ``digits``): the 1,797 8x8 handwritten digits bundled in
  ``tvmprune/assets/digits.npz`` (from scikit-learn, BSD licence; see
  ``tvmprune/assets/README.md``), upsampled to 16x16, one grey channel, split 80/20 into
  train / validation with a fixed seed.  Nothing is downloaded.
* a directory: torchvision ``ImageFolder``; if it has ``train/`` and ``val/`` (or
  ``validation/``, ``test/``) sub-directories they are used, otherwise one folder is
  split 80/20.  Images are resized to the model's input H x W (grey if C == 1).
* ``path/to/file.py:factory``: ``factory()`` returns ``(train_loader, val_loader)``;
  each loader yields ``(inputs, integer labels)`` batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .errors import TvmpruneError
from .user_code import call_factory

DIGITS_FILE = Path(__file__).resolve().parent / "assets" / "digits.npz"
DIGITS_SIZE = 16
DIGITS_INPUT_SHAPE: tuple[int, int, int, int] = (1, 1, DIGITS_SIZE, DIGITS_SIZE)
BUILTIN_NAMES = ("builtin", "digits")


class DatasetError(TvmpruneError, ValueError):
    """A data set that cannot be found, loaded, or does not fit the model."""


@dataclass
class Dataset:
    """A train / validation pair of loaders and a short description."""

    train: Iterable
    val: Iterable
    name: str
    num_classes: int | None = None
    train_size: int | None = None
    val_size: int | None = None


def load_digits_arrays(path: "str | os.PathLike[str]" = DIGITS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits: ``images`` uint8 [1797, 8, 8] (0..16) and ``labels`` uint8 [1797]."""
    try:
        with np.load(path) as z:
            return z["images"], z["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"the built-in digits data ({path}) is missing or damaged ({e}); "
                           "reinstall tvmprune or give --dataset DIR") from None


def digits_tensors(size: int = DIGITS_SIZE, val_fraction: float = 0.2, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_val, y_val)``: Nx1xSIZExSIZE float32 (mean 0, std 1), int64 labels."""
    images, labels = load_digits_arrays()
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(labels.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    n_val = int(round(len(y) * val_fraction))
    vi, ti = perm[:n_val], perm[n_val:]
    return x[ti].contiguous(), y[ti].contiguous(), x[vi].contiguous(), y[vi].contiguous()


def digits_loaders(batch_size: int = 64, size: int = DIGITS_SIZE, seed: int = 0) -> Dataset:
    """The built-in digits as (shuffled) train and validation ``DataLoader``s."""
    from torch.utils.data import DataLoader, TensorDataset

    xt, yt, xv, yv = digits_tensors(size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=True, generator=g)
    val = DataLoader(TensorDataset(xv, yv), batch_size=256, shuffle=False)
    return Dataset(train, val, f"builtin digits {size}x{size} (train {len(yt)}, val {len(yv)})", 10,
                   len(yt), len(yv))


def _image_folder(root: Path, input_shape: tuple[int, ...], batch_size: int, seed: int) -> Dataset:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    c, h, w = input_shape[1], input_shape[2], input_shape[3]
    tf = [transforms.Resize((h, w))]
    if c == 1:
        tf.append(transforms.Grayscale(1))
    tf.append(transforms.ToTensor())
    if c == 3:
        tf.append(transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    elif c != 1:
        raise DatasetError(f"an image folder gives 1 or 3 channels; the input shape asks for {c}")
    tf = transforms.Compose(tf)

    def folder(p: Path) -> Any:
        try:
            return datasets.ImageFolder(str(p), transform=tf)
        except (FileNotFoundError, RuntimeError) as e:
            raise DatasetError(f"{p} is not an image folder (one sub-directory of images per class): "
                               f"{str(e).splitlines()[0]}") from None

    sub = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    val_dir = next((sub[k] for k in ("val", "validation", "test") if k in sub), None)
    if "train" in sub and val_dir is not None:
        tr, va = folder(sub["train"]), folder(val_dir)
        if tr.classes != va.classes:
            raise DatasetError(f"{sub['train']} and {val_dir} have different classes")
        ncls = len(tr.classes)
    else:
        full = folder(root)
        if len(full) < 2:
            raise DatasetError(f"{root} holds fewer than 2 images")
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, int(round(len(full) * 0.2)))
        tr, va = Subset(full, perm[n_val:]), Subset(full, perm[:n_val])
        ncls = len(full.classes)
    g = torch.Generator().manual_seed(seed)
    return Dataset(DataLoader(tr, batch_size=batch_size, shuffle=True, generator=g),
                   DataLoader(va, batch_size=batch_size, shuffle=False),
                   f"image folder {root} ({ncls} classes, train {len(tr)}, val {len(va)})", ncls, len(tr), len(va))


def _factory(spec: str) -> Dataset:
    out = call_factory(spec, DatasetError, "data set")
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise DatasetError(f"{spec}() must return (train_loader, val_loader), got {type(out).__name__}")
    return Dataset(out[0], out[1], f"{spec}()")


def load_dataset(spec: str, input_shape: tuple[int, ...] = DIGITS_INPUT_SHAPE, batch_size: int = 64,
                 seed: int = 0) -> Dataset:
    """Resolve ``--dataset``: ``builtin`` / ``digits``, an ImageFolder directory, or ``file.py:factory``.

    Raises:
        DatasetError: with what is wrong and what to give instead.
    """
    s = str(spec).strip()
    if s.lower() in BUILTIN_NAMES:
        if tuple(input_shape[1:]) not in ((1, DIGITS_SIZE, DIGITS_SIZE),):
            size = input_shape[2]
            if input_shape[1] != 1 or input_shape[2] != input_shape[3]:
                raise DatasetError(f"the built-in digits are 1 x H x H grey images; input shape "
                                   f"{'x'.join(map(str, input_shape))} does not fit (use 1x1x16x16)")
            return digits_loaders(batch_size, size=size, seed=seed)
        return digits_loaders(batch_size, seed=seed)
    if ":" in s and ".py" in s.split(":")[0]:
        return _factory(s)
    p = Path(s)
    if p.is_dir():
        return _image_folder(p, input_shape, batch_size, seed)
    raise DatasetError(f"unknown data set {spec!r}: give 'builtin', an ImageFolder directory, "
                       "or path/to/file.py:factory returning (train_loader, val_loader)")


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable, max_batches: int | None = None) -> float:
    """Top-1 accuracy of ``model`` (eval mode) over ``loader``, in [0, 1]."""
    model.eval()
    correct = total = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = batch[0], batch[1]
        pred = model(x).argmax(dim=1)
        correct += int((pred == y).sum())
        total += int(y.numel())
    if total == 0:
        raise DatasetError("the validation loader yielded no samples")
    return correct / total


def train(model: torch.nn.Module, loader: Iterable, epochs: int, lr: float = 3e-3, weight_decay: float = 1e-4,
          log: Any = None, seed: int = 0) -> torch.nn.Module:
    """Train ``model`` from its current weights with Adam + cosine schedule (no masks)."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    try:
        steps = epochs * len(loader)  # type: ignore[arg-type]
    except TypeError:
        steps = 0
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if steps else None
    from .console import progress

    loss_fn = torch.nn.CrossEntropyLoss()
    for ep in progress(range(epochs), desc="training", unit="epoch"):
        model.train()
        tot, n = 0.0, 0
        for batch in loader:
            x, y = batch[0], batch[1]
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot += float(loss.detach())
            n += 1
        if log:
            log(f"epoch {ep + 1}/{epochs}: loss {tot / max(n, 1):.4f}")
    return model.eval()
