"""The `register_similarities` hook: the similarities exact neighbour search ranks by.

The third-party similarity here is a plain dot product (its self-similarity differs per vector).
Its references are computed by brute force in integer arithmetic on small-integer vectors, whose
float32 products are exact: the expected neighbours do not depend on a BLAS kernel's last bits,
and ties (equal dot products) are real ties, broken by the lower index.
"""

from __future__ import annotations

import numpy as np
import pytest

from xmodal import DatasetSpec, PairedData, Param, SimilaritySpec, hookimpl, knn, mnno
from xmodal.neighbors import NeighborError
from xmodal.plugins import get_registry

DOT = SimilaritySpec(
    name="dot",
    prepare=lambda X, sq_norms: (X, None),
    self_similarity=None,  # ‖x‖², different for every vector
    description="dot product",
)


def integer_space(rng: np.random.Generator, n: int, d: int, distinct: int) -> np.ndarray:
    """n rows drawn from `distinct` random small-integer vectors (so with exact copies)."""
    base = rng.integers(-2, 3, size=(distinct, d))
    return base[rng.integers(0, distinct, size=n)].astype(np.float32)


def brute_force_dot(X: np.ndarray, k: int, include_self: bool) -> np.ndarray:
    """Each item's k nearest by exact integer dot product, ties to the lower index."""
    Xi = X.astype(np.int64)
    S = Xi @ Xi.T
    n = len(X)
    lists = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        ranked = sorted(others, key=lambda j: (-S[i, j], j))
        lists.append([i, *ranked[: k - 1]] if include_self else ranked[:k])
    return np.array(lists, dtype=np.int64)


def brute_force_mnno(A: np.ndarray, B: np.ndarray, k: int) -> float:
    a, b = brute_force_dot(A, k, False), brute_force_dot(B, k, False)
    return sum(len(set(x) & set(y)) for x, y in zip(a, b, strict=True)) / (len(A) * k)


def test_the_builtin_similarities_come_from_the_similarities_plugin():
    registry = get_registry()
    assert {"cosine", "euclidean"} <= set(registry.similarities)
    assert registry.owners[("similarities", "cosine")] == "similarities"
    assert registry.similarities["cosine"].rejects_zero_rows
    assert not registry.similarities["euclidean"].rejects_zero_rows


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("block", [32, 1536])
def test_a_dot_product_finds_the_brute_force_neighbours(include_self, block):
    rng = np.random.default_rng(3)
    X = integer_space(rng, 150, 6, distinct=40)  # many exact copies and many equal products
    for k in (1, 4, 11):
        got = knn(X, k, similarity=DOT, include_self=include_self, block_size=block)
        np.testing.assert_array_equal(got.indices, brute_force_dot(X, k, include_self))
        exact = (X.astype(np.int64) @ X.astype(np.int64).T)[np.arange(150)[:, None], got.indices]
        np.testing.assert_array_equal(got.similarities, exact.astype(np.float32))
        assert got.similarity == "dot"


def test_mnno_under_a_spec_equals_the_brute_force_reference():
    rng = np.random.default_rng(4)
    A = integer_space(rng, 90, 5, distinct=60)
    B = integer_space(rng, 90, 4, distinct=30)
    assert mnno(A, B, 5, similarity=DOT) == pytest.approx(brute_force_mnno(A, B, 5), abs=1e-12)


# --- registered in-process and used by a study ---------------------------------------------------

N_TRAIN, N_TEST = 12, 48


def _load(params):
    rng = np.random.default_rng(params["seed"])
    n = N_TRAIN + N_TEST
    return PairedData(
        ids=tuple(f"w{i}" for i in range(n)),
        features={"a": integer_space(rng, n, 6, 35), "b": integer_space(rng, n, 5, 25)},
        split=np.array(["train"] * N_TRAIN + ["test"] * N_TEST),
    )


class DotPlugin:
    @staticmethod
    @hookimpl
    def register_similarities(register):
        register(DOT)

    @staticmethod
    @hookimpl
    def register_datasets(register):
        register(
            DatasetSpec(
                name="integers",
                load=_load,
                feature_sets=lambda params: ["a", "b"],
                params={"seed": Param(int, default=0)},
            )
        )


STUDY = """\
[study]
name = "dot"

[data]
dataset = "integers"
directions = "forward"

[[mapping]]
name = "linear"

[runs]
identity = true
trained = false
untrained = false

[[metric]]
name = "mnno"
k = [1, 3, 7]
similarity = {similarity}
"""


def test_a_similarity_registered_in_process_runs_mnno(xmodal_tester):
    xmodal_tester.register(DotPlugin, name="dot_plugin")
    result = xmodal_tester.run(STUDY.format(similarity='["dot", "euclidean"]'))
    result.assert_ok()
    test = slice(N_TRAIN, None)
    data = _load({"seed": 0})
    a, b = data.features["a"][test], data.features["b"][test]
    for k in (1, 3, 7):
        (row,) = result.results(metric="mnno", comparison="input-target", similarity="dot", k=k)
        assert row["value"] == pytest.approx(brute_force_mnno(a, b, k), abs=1e-12)
        (same,) = result.results(metric="mnno", comparison="pred-input", similarity="dot", k=k)
        assert same["value"] == 1.0  # the identity's prediction is its input
    assert result.results(similarity="euclidean")
    # The public function finds it by name while it is registered.
    assert np.array_equal(knn(a, 3, similarity="dot").indices, brute_force_dot(a, 3, False))


def test_a_metric_similarity_is_one_of_the_registered_names(cli, write_study):
    study = STUDY.replace("integers", "synthetic")
    result = cli("validate", write_study(study.format(similarity='["cosin"]')))
    assert result.code != 0
    assert "metric[0].similarity" in result.output
    assert "did you mean 'cosine'" in result.output
    assert "'euclidean'" in result.output  # the registered names are listed
    result = cli("validate", write_study(study.format(similarity='"dot"')))
    assert result.code != 0 and "'dot' is not allowed" in result.output


def test_an_unknown_name_in_knn_names_the_registered_ones():
    X = np.eye(4, dtype=np.float32)
    with pytest.raises(NeighborError, match=r"unknown similarity 'cosin' \(did you mean 'cosine'"):
        knn(X, 1, similarity="cosin")


def test_zero_rows_are_refused_only_by_a_similarity_that_declares_it(xmodal_tester):
    refusing = SimilaritySpec(
        name="unit_dot",
        prepare=lambda X, sq: (X / np.sqrt(sq).astype(np.float32)[:, None], None),
        self_similarity=1.0,
        rejects_zero_rows=True,
    )
    X = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], np.float32)
    assert knn(X, 2, similarity=DOT).indices.shape == (4, 2)
    with pytest.raises(NeighborError, match=r"1 all-zero row.*unit_dot similarity is undefined"):
        knn(X, 2, similarity=refusing)

    def zeroed(params):
        data = _load(params)
        data.features["a"][N_TRAIN + 2] = 0
        return data

    zeroed_dataset = DatasetSpec(
        name="zeroed",
        load=zeroed,
        feature_sets=lambda params: ["a", "b"],
        params={"seed": Param(int, default=0)},
    )
    xmodal_tester.register(
        {
            "register_similarities": lambda register: register(refusing),
            "register_datasets": lambda register: register(zeroed_dataset),
        },
        name="refusing",
    )
    study = STUDY.replace("integers", "zeroed").format(similarity='"unit_dot"')
    result = xmodal_tester.validate(study)
    assert result.code != 0
    assert "all-zero row(s), which have no unit_dot similarity: items 'w14'" in result.output
    assert "similarity = 'euclidean'" in result.output


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda X, sq: (X[:, :0], None), r"prepare returned vectors of shape \(4, 0\)"),
        (lambda X, sq: (X, sq[:2]), r"prepare returned offsets of shape \(2,\)"),
        (lambda X, sq: (X * np.float32(1e30), None), "overflow float32"),
        (lambda X, sq: 1 / 0, "cannot prepare the vectors: ZeroDivisionError"),
    ],
)
def test_a_similarity_whose_prepare_breaks_its_contract_is_a_clear_error(prepare, message):
    spec = SimilaritySpec(name="broken", prepare=prepare, self_similarity=0.0)
    with pytest.raises(NeighborError, match=message):
        knn(np.arange(8, dtype=np.float32).reshape(4, 2) + 1, 1, similarity=spec)
