"""Malformed and adversarial study files, generated: validation answers with the study-format error
(exit code 2) or accepts the file, and never raises anything else."""

from __future__ import annotations

import copy
import tomllib

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_STUDY
from xmodal.errors import StudyError
from xmodal.planning import make_plan
from xmodal.plugins import get_registry
from xmodal.prechecks import check_runs, max_k
from xmodal.study import parse_study
from xmodal.studydata import StudyData
from xmodal.tomlpos import key_lines, scan

BASE = tomllib.loads(TINY_STUDY)
KEYS = ["name", "depth", "k", "epochs", "dataset", "pairs", "seeds", "hidden", "lr", "split", "folds",
        "similarity", "batch_size", "n_items", "directions", "trained", "params", "x", "", "dépth"]  # fmt: skip

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.sampled_from(
        ["mlp", "linear", "synthetic", "text", "image", "cosine", "full", "kfold", "mse"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)


def paths(doc, prefix=()):
    """Every (container, key) pair in a parsed TOML document."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        yield doc, key
        if isinstance(value, dict | list):
            yield from paths(value, (*prefix, key))


@st.composite
def mutated_studies(draw):
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        targets = list(paths(doc))
        container, key = draw(st.sampled_from(targets))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = draw(values)
        elif action == "delete" and isinstance(container, dict):
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.sampled_from(KEYS))] = draw(values)
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):  # tomli-w refuses e.g. NaN-free edge cases it cannot write
        return TINY_STUDY


def validate(text: str) -> None:
    registry = get_registry()
    study = parse_study(text, "fuzz.toml", registry)
    runs = make_plan(study, registry)
    check_runs(study, runs, StudyData(registry, k_hint=max_k(runs, registry)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_studies())
def test_mutated_studies_are_accepted_or_rejected_with_a_study_error(text):
    try:
        validate(text)
    except StudyError as error:
        assert error.problems and all(p.message for p in error.problems)
        assert error.exit_code == 2


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_never_more_than_a_study_error(text):
    try:
        validate(text)
    except StudyError as error:
        assert error.exit_code == 2


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(TINY_STUDY) - 1), st.text(min_size=1, max_size=5))
def test_a_corrupted_valid_file_is_never_more_than_a_study_error(position, junk):
    try:
        validate(TINY_STUDY[:position] + junk + TINY_STUDY[position:])
    except StudyError as error:
        assert error.exit_code == 2


documents = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(
        scalars.filter(lambda v: v == v),  # tomli-w writes no NaN a test could compare
        st.dictionaries(st.sampled_from(KEYS), scalars, max_size=3),
        st.lists(
            st.dictionaries(st.sampled_from(KEYS), scalars, min_size=1, max_size=2),
            min_size=1,
            max_size=3,
        ),
        st.lists(st.lists(scalars, max_size=3), max_size=3),
    ),
    max_size=5,
)


def leaf_paths(value, prefix=""):
    """Every key path of a parsed document, elements of arrays of tables indexed."""
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from leaf_paths(inner, path)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, inner in enumerate(value):
            yield from leaf_paths(inner, f"{prefix}[{index}]")


@settings(max_examples=150, deadline=None)
@given(documents)
def test_the_position_scanner_finds_every_key_tomllib_reads(doc):
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return
    parsed = tomllib.loads(text)
    lines = key_lines(text)
    source = text.split("\n")  # TOML lines: not split at \x85 or \u2028 as splitlines() does
    for path in leaf_paths(parsed):
        assert path in lines, (path, text)
        last = path.rsplit(".", 1)[-1].split("[")[0]
        assert last in source[lines[path] - 1], (path, lines[path], text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_the_position_scanner_never_raises(text):
    layout = scan(text, max_depth=8)
    assert layout.depth >= 0
