"""xmodal-npydir: a third-party xmodal plugin written from docs/plugins.md alone.

- dataset `npydir`: a directory of `<feature set>.npy` matrices (one row per item), with optional
  `ids.txt` (one id per line) and `split.txt` (one "train"/"test" mark per line);
- mapping `resmlp`: a residual MLP (`blocks` residual blocks of width `hidden`);
- loss `mse_cosine`: (1 - weight) * MSE + weight * (1 - cosine similarity);
- metrics `dcka` (debiased linear CKA) and `procrustes` (orthogonal Procrustes disparity), each
  comparing the predicted, input and target spaces pairwise;
- command `xmodal npydir-show DIRECTORY`.

It imports nothing from xmodal but the public names of `from xmodal import ...`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xmodal import (
    DatasetSpec,
    FeatureSetInfo,
    LossSpec,
    MappingSpec,
    MetricSpec,
    PairedData,
    Param,
    ResultRow,
    XmodalError,
    combine,
    files_digest,
    hookimpl,
    value_digest,
)

COMPARISONS = ("pred-input", "pred-target", "input-target")

# --- dataset: a directory of .npy files -----------------------------------------------------------


def _directory(params) -> Path:
    directory = Path(params["path"]).expanduser()
    if not directory.is_dir():
        raise XmodalError(f"npydir: {directory} is not a directory; set [data.params] path")
    return directory


def _matrices(directory: Path) -> dict[str, Path]:
    found = {p.stem: p for p in sorted(directory.glob("*.npy"))}
    if len(found) < 2:
        raise XmodalError(
            f"npydir: {directory} holds {len(found)} .npy file(s); a study pairs two feature "
            "sets, one <name>.npy matrix each"
        )
    return found


def _lines(path: Path) -> list[str] | None:
    return path.read_text().split() if path.exists() else None


def load(params):
    directory = _directory(params)
    features = {}
    for name, path in _matrices(directory).items():
        matrix = np.load(path)
        if matrix.ndim != 2:
            raise XmodalError(f"npydir: {path} has shape {matrix.shape}; expected (items, dims)")
        features[name] = matrix.astype(np.float32)
    n = len(next(iter(features.values())))
    ids = _lines(directory / "ids.txt") or [str(i) for i in range(n)]
    split = _lines(directory / "split.txt")
    return PairedData(
        ids=tuple(ids),
        features=features,
        split=None if split is None else np.array(split),
        source=str(directory),
    )


def feature_sets(params):
    return list(_matrices(_directory(params)))


def describe(params):
    infos = []
    for name, path in _matrices(_directory(params)).items():
        shape = np.load(path, mmap_mode="r").shape  # the header only
        infos.append(
            FeatureSetInfo(name, shape[0], shape[1] if len(shape) > 1 else None, str(path))
        )
    return infos


def fingerprint(params):
    directory = _directory(params)
    files = {p.name: p for p in sorted(directory.iterdir()) if p.suffix in (".npy", ".txt")}
    return combine(files_digest(files), value_digest(params))


# --- mapping: a residual MLP ---------------------------------------------------------------------


class ResidualMLP(torch.nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(in_dim, hidden)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))
            for _ in range(blocks)
        )
        self.out = torch.nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(torch.relu(h))


def build_resmlp(in_dim, out_dim, params):
    return ResidualMLP(in_dim, out_dim, params["hidden"], params["blocks"])


# --- loss: MSE + cosine --------------------------------------------------------------------------


def build_mse_cosine(params):
    weight = params["weight"]

    def loss(pred, target):
        mse = torch.mean((pred - target) ** 2)
        cosine = torch.nn.functional.cosine_similarity(pred, target, dim=1).mean()
        return (1 - weight) * mse + weight * (1 - cosine)

    return loss


def check_mse_cosine(params, context):
    if context.out_dim == 1 and params["weight"] > 0:
        yield "weight", "the cosine of 1-dimensional rows is only their sign; use weight = 0"


# --- metrics: debiased CKA and Procrustes --------------------------------------------------------


def _pairs(spaces):
    yield "pred-input", spaces.predicted, spaces.input
    yield "pred-target", spaces.predicted, spaces.target
    yield "input-target", spaces.input, spaces.target


def _unbiased_hsic(k: np.ndarray, m: np.ndarray) -> float:
    """The unbiased HSIC estimator (Song et al. 2012) of two Gram matrices."""
    n = len(k)
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    term = np.sum(k * m) + k.sum() * m.sum() / ((n - 1) * (n - 2))
    term -= 2.0 * (k.sum(axis=0) @ m.sum(axis=0)) / (n - 2)
    return float(term / (n * (n - 3)))


def debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA of two row-aligned matrices (NaN when a space is constant)."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    k, m = x @ x.T, y @ y.T
    denominator = np.sqrt(_unbiased_hsic(k, k) * _unbiased_hsic(m, m))
    return float(_unbiased_hsic(k, m) / denominator) if denominator > 0 else float("nan")


def dcka(probe, params):
    for split, spaces in probe.spaces.items():
        for comparison, a, b in _pairs(spaces):
            yield ResultRow(split, "dcka", comparison, debiased_cka(a, b))


def check_dcka(params, context):
    if context.n_items is not None and context.n_items < 4:
        yield (
            "",
            f"debiased CKA needs at least 4 items; the {context.split} split has {context.n_items}",
        )


def procrustes_disparity(x: np.ndarray, y: np.ndarray, scale: bool) -> float:
    """1 - (nuclear norm of X^T Y)^2 for centred, unit-Frobenius X and Y: 0 when one is a
    rotation (and, with `scale`, a scaling) of the other, 1 when they share nothing."""
    x = x.astype(np.float64) - x.mean(axis=0)
    y = y.astype(np.float64) - y.mean(axis=0)
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return float("nan")
    nuclear = np.linalg.svd((x / nx).T @ (y / ny), compute_uv=False).sum()  # in [0, 1]
    # With scaling: scipy.spatial.procrustes's disparity; without: min_R |XR - Y|^2 / 2.
    return float(max(0.0, 1.0 - nuclear**2 if scale else 1.0 - nuclear))


def procrustes(probe, params):
    for split, spaces in probe.spaces.items():
        for comparison, a, b in _pairs(spaces):
            yield ResultRow(
                split, "procrustes", comparison, procrustes_disparity(a, b, params["scale"])
            )


# --- registration --------------------------------------------------------------------------------


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            "npydir",
            load,
            feature_sets,
            {"path": Param(str, doc="directory of <feature set>.npy files")},
            description="a directory of .npy feature matrices (+ ids.txt, split.txt)",
            describe=describe,
            fingerprint=fingerprint,
        )
    )


@hookimpl
def register_mappings(register):
    register(
        MappingSpec(
            "resmlp",
            build_resmlp,
            {
                "hidden": Param(int, default=32, min=1, max=8192),
                "blocks": Param(int, default=1, min=0, max=64),
            },
            description="residual MLP: a projection, `blocks` residual ReLU blocks, a projection",
            depth=lambda params: params["blocks"] + 1,
        )
    )


@hookimpl
def register_losses(register):
    register(
        LossSpec(
            "mse_cosine",
            build_mse_cosine,
            {"weight": Param(float, default=0.5, min=0.0, max=1.0)},
            description="(1 - weight) * MSE + weight * (1 - cosine)",
            check=check_mse_cosine,
        )
    )


@hookimpl
def register_metrics(register):
    register(
        MetricSpec(
            "dcka",
            dcka,
            description="debiased linear CKA between the predicted, input and target spaces",
            compares=COMPARISONS,
            value_range=(-1.0, 1.0),
            check=check_dcka,
        )
    )
    register(
        MetricSpec(
            "procrustes",
            procrustes,
            {"scale": Param(bool, default=True, doc="allow a global scaling besides the rotation")},
            description="orthogonal Procrustes disparity between the spaces (0: a rotation)",
            compares=COMPARISONS,
            value_range=(0.0, 1.0),
        )
    )


@hookimpl
def register_commands(cli):
    @cli.command("npydir-show")
    def show(directory: Path):
        """List the feature sets of a directory of .npy files."""
        for info in describe({"path": str(directory)}):
            print(f"{info.name}: {info.n_items} items x {info.dim} dims ({info.source})")
