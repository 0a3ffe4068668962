"""Malformed study files: each gets one precise message (file, line, key path, what is allowed,
a suggestion where one fits), every problem at once, exit code 2 and no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_STUDY


def replace(old: str, new: str) -> str:
    assert old in TINY_STUDY, old
    return TINY_STUDY.replace(old, new)


CASES = {
    "bad TOML syntax": (
        replace('name = "tiny"', 'name = "tiny'),
        ["study.toml:2", "invalid TOML"],
    ),
    "unknown section, with suggestion": (
        TINY_STUDY + "\n[trian]\nepochs = 3\n",
        ["study.toml:34", "trian", "is not a study section", "did you mean 'train'"],
    ),
    "unknown key in a section": (
        replace("batch_size = 32", "batch_size = 32\nlearning_rate = 0.1"),
        ["study.toml:29", "train.learning_rate", "not a known parameter", "allowed:", "lr"],
    ),
    "typo in a plugin name": (
        replace('name = "mlp"', 'name = "mpl"'),
        [
            "study.toml:19",
            "mapping[1].name",
            "'mpl' is not a registered mapping",
            "did you mean 'mlp'",
        ],
    ),
    "wrong type": (
        replace("epochs = 3", 'epochs = "three"'),
        ["study.toml:27", "train.epochs", "expected integer", "allowed: integer in [1, 100000]"],
    ),
    "k larger than the test split": (
        replace("k = [1, 5, 10]", "k = [1, 5, 500]"),
        ["study.toml:32", "metric[0].k", "k = 500 is larger than the test split allows"],
    ),
    "empty sweep": (
        replace("depth = 2", "depth = []"),
        ["study.toml:20", "mapping[1].depth", "empty sweep"],
    ),
    "depth out of range": (
        replace("depth = 2", "depth = [2, 7]"),
        ["study.toml:20", "mapping[1].depth", "7 is out of range", "integer in [0, 5]"],
    ),
    "unknown dataset": (
        replace('dataset = "synthetic"', 'dataset = "synthetik"'),
        ["study.toml:6", "data.dataset", "not a registered dataset", "did you mean 'synthetic'"],
    ),
    "unknown feature set in pairs": (
        replace('pairs = [["text", "image"]]', 'pairs = [["text", "imgae"]]'),
        ["study.toml:7", "data.pairs", "'imgae' is not a feature set", "did you mean 'image'"],
    ),
    "unknown similarity": (
        replace("k = [1, 5, 10]", 'k = [1, 5, 10]\nsimilarity = "cosin"'),
        ["metric[0].similarity", "'cosin' is not allowed", "did you mean 'cosine'"],
    ),
    "missing study name": (
        replace('name = "tiny"\n', ""),
        ["study.name", "is required"],
    ),
    "dataset parameter out of range": (
        replace("n_items = 240", "n_items = 2"),
        ["study.toml:11", "data.params.n_items", "2 is out of range"],
    ),
    "both run kinds off": (
        TINY_STUDY + "\n[runs]\ntrained = false\nuntrained = false\n",
        ["runs", "nothing would run"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_study_is_reported_precisely(case, cli, write_study, db):
    text, expected = CASES[case]
    path = write_study(text)
    result = cli("validate", path)
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.output, f"{fragment!r} missing from:\n{result.output}"


def test_every_problem_is_reported_at_once(cli, write_study):
    text = replace("epochs = 3", 'epochs = "x"').replace('name = "mlp"', 'name = "mlpp"')
    result = cli("validate", write_study(text))
    assert result.code == 2
    assert "2 problem(s)" in result.output
    assert "train.epochs" in result.output and "mapping[1].name" in result.output


def test_run_refuses_an_invalid_study_before_running_anything(cli, write_study, db):
    result = cli("run", write_study(replace("depth = 2", "depth = 9")), "--db", db)
    assert result.code == 2
    assert not db.exists()


def test_missing_study_file_is_a_study_error(cli, tmp_path):
    result = cli("validate", tmp_path / "nope.toml")
    assert result.code == 2
    assert "nope.toml: no such study file" in result.output


def test_valid_study_passes(cli, write_study):
    result = cli("validate", write_study())
    assert result.code == 0, result.output
    assert "8 run(s)" in result.output


def test_k_is_checked_against_every_split_the_probe_curves_visit(cli, write_study):
    text = TINY_STUDY.replace("batch_size = 32", "batch_size = 32\nprobe_every = 1").replace(
        "k = [1, 5, 10]", "k = [1, 5, 100]"
    )
    text += '\n[measure]\nsplits = ["train"]\n'
    result = cli("validate", write_study(text))
    assert result.code == 2
    assert "metric[0].k" in result.output and "larger than the test split" in result.output
