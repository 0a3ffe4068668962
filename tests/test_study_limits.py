"""A study file cannot cost more than its size, nor pick where runs go, nor fail late.

Reading is linear in the file's size (no regular expression that can backtrack), the grid a study
declares is counted before it is expanded and refused past a limit that a flag raises, nesting is
limited before the recursive TOML parser sees it, values that would fail at the first run (seeds
beyond 32 bits) fail in `validate`, and every way a path can fail to be a study file is a study
error (exit code 2) with the file's name and the reason.
"""

from __future__ import annotations

import re
import sys
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import TINY_STUDY
from xmodal import tomlpos
from xmodal.errors import StudyError, XmodalError
from xmodal.planning import make_plan
from xmodal.plugins import get_registry
from xmodal.study import DEFAULT_MAX_RUNS, MAX_NESTING, load_study, parse_study


def replace(old: str, new: str, text: str = TINY_STUDY) -> str:
    assert old in text, old
    return text.replace(old, new)


def adversarial_study(spaces: int) -> str:
    """TINY_STUDY with runs of blanks in table headers, array-table headers and key lines."""
    run = " " * spaces
    text = replace("[train]", f"[{run}train{run}]")
    text = replace("[[loss]]", f"[[{run}loss\t{chr(9) * spaces}]]", text)
    text = replace("epochs = 3", f"epochs{run}={run}3{run}# {run}", text)
    text = replace("[data.params]", f"[ data {run}.{run} params ]", text)
    return text + f"\n#{run}\n"


def executed_lines(function, *args) -> int:
    """How many Python lines `function(*args)` executes: a deterministic operation count."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        function(*args)
    finally:
        sys.settrace(None)
    return count


# -- time linear in the file's size ---------------------------------------------------------------


def test_a_2kb_study_with_long_runs_of_blanks_is_valid(cli, write_study):
    text = adversarial_study(150)
    assert 2000 <= len(text.encode()) < 2500
    result = cli("validate", write_study(text))
    assert result.code == 0, result.output
    assert "8 run(s)" in result.output


def test_4000_spaces_on_one_line_are_read_in_one_pass(write_study):
    text = replace("[train]", "[" + " " * 4000 + "train]")
    study = load_study(write_study(text), get_registry())
    assert study.line_of("train.epochs") == 27


def dotted_quoted_key(dots: int) -> str:
    """An unknown key made of thousands of dots, inside quotes (one key, not a nested one)."""
    return replace("epochs = 3", 'epochs = 3\n"' + "a." * dots + 'a" = 1')


def unknown_keys(count: int) -> str:
    return replace("epochs = 3", "epochs = 3\n" + "".join(f"k{i} = {i}\n" for i in range(count)))


@pytest.mark.parametrize("make", [adversarial_study, dotted_quoted_key, unknown_keys])
def test_reading_a_study_grows_linearly_with_its_size(make):
    registry = get_registry()

    def read(text: str) -> None:
        try:
            parse_study(text, "s.toml", registry)
        except StudyError as error:
            error.render()

    small_text, large_text = make(2_000), make(16_000)
    growth = len(large_text) / len(small_text)
    assert growth > 6
    work = executed_lines(read, large_text) / executed_lines(read, small_text)
    # A linear reader's work grows as the text does (the old cubic regexes: 512 times for 8).
    assert work < 1.1 * growth, (work, growth)


def test_position_finding_uses_no_regular_expression_that_can_backtrack():
    """Each pattern is one character class, repeated: it cannot match a text in two ways."""
    patterns = [v for v in vars(tomlpos).values() if isinstance(v, re.Pattern)]
    assert patterns
    for pattern in patterns:
        assert re.fullmatch(r"\[(?:\\.|[^\]\\])+\][*+]?", pattern.pattern), pattern.pattern


def test_a_line_inside_a_multiline_array_is_not_taken_for_a_table_header(cli, write_study):
    text = replace('pairs = [["text", "image"]]', 'pairs = [\n  ["text", "image"],\n]')
    text = replace("depth = 2", "depth = 9", text)
    result = cli("validate", write_study(text))
    assert result.code == 2
    assert "study.toml:22: mapping[1].depth: 9 is out of range" in result.output


# -- the grid is counted before it is expanded ----------------------------------------------------


def forty_million_runs() -> str:
    """A ~70 KB file whose sweeps multiply to tens of millions of runs."""
    lrs = ", ".join(f"{i / 1e5:.5f}" for i in range(6_000))
    seeds = ", ".join(str(i) for i in range(3_000))
    text = replace("epochs = 3", f"epochs = 3\nlr = [{lrs}]")
    return replace("seeds = [0]", f"seeds = [{seeds}]", text)


def test_a_huge_grid_is_refused_before_anything_is_expanded(cli, write_study):
    text = forty_million_runs()
    tracemalloc.start()
    try:
        with pytest.raises(StudyError) as caught:
            parse_study(text, "grid.toml", get_registry())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB to refuse a {len(text) // 1000} KB file"
    message = str(caught.value)
    assert "the study declares 72,012,000 runs, more than the limit of 10,000" in message
    assert "grid.toml:28: train.lr:" in message
    assert "train.lr: 6,000 values (line 28)" in message
    assert "study.seeds: 3,000 values (line 3)" in message
    assert "data.directions: 2 values (line 8)" in message
    assert "--max-runs N or XMODAL_MAX_RUNS=N" in message

    result = cli("validate", write_study(text))
    assert result.code == 2 and "Traceback" not in result.output


def swept_study() -> str:
    """kfold x identity x sweeps: every factor of the run count is in play, no run repeats."""
    text = replace("depth = 2", "depth = [1, 2]")
    text = replace("seeds = [0]", "seeds = [0, 1, 2]", text)
    text = replace("epochs = 3", "epochs = [2, 3]", text)
    text = replace('directions = ["forward", "backward"]', 'directions = ["forward"]\nsplit_strategy = "kfold"\nfolds = 3', text)  # fmt: skip
    text = replace("n_items = 240", "n_items = [240, 300]", text)
    return text + "\n[runs]\nidentity = true\n"


@pytest.mark.parametrize("text", [TINY_STUDY, swept_study()], ids=["tiny", "swept"])
def test_the_run_count_is_exactly_the_plan_length(text):
    registry = get_registry()
    runs = len(make_plan(parse_study(text, "s.toml", registry), registry))
    assert runs > 1
    parse_study(text, "s.toml", registry, max_runs=runs)
    with pytest.raises(StudyError, match=f"declares {runs:,} runs, more than the limit of"):
        parse_study(text, "s.toml", registry, max_runs=runs - 1)


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_max_runs_flag_and_environment_set_the_limit(command, cli, write_study, db, monkeypatch):
    path = write_study()  # 8 runs
    extra = ["--db", db] if command != "validate" else []
    refused = cli(command, path, "--max-runs", 7, *extra)
    assert refused.code == 2
    assert "declares 8 runs, more than the limit of 7" in refused.output
    monkeypatch.setenv("XMODAL_MAX_RUNS", "7")
    assert cli(command, path, *extra).code == 2
    if command == "validate":
        assert cli(command, path, "--max-runs", 8).code == 0
    assert not db.exists()  # nothing ran


def test_the_default_limit_is_ten_thousand_runs():
    assert DEFAULT_MAX_RUNS == 10_000


def test_a_nonsense_limit_in_the_environment_is_a_clear_error(cli, write_study, monkeypatch):
    monkeypatch.setenv("XMODAL_MAX_RUNS", "lots")
    result = cli("validate", write_study())
    assert result.code != 0 and "XMODAL_MAX_RUNS='lots' is not a positive" in result.output


def test_a_sweep_no_run_uses_is_still_limited(write_study):
    """With trained = false no run uses the loss, but the plan would still expand its sweep."""
    margins = ", ".join(f"{i / 1000}" for i in range(20_000))
    text = replace('name = "mse"', f'name = "max_margin"\nmargin = [{margins}]')
    text += "\n[runs]\ntrained = false\n"
    with pytest.raises(StudyError) as caught:
        parse_study(text, "s.toml", get_registry())
    assert "s.toml:25: loss[0].margin: [loss] declares 20,000 variants" in str(caught.value)


def test_a_mapping_sweep_product_is_not_expanded_to_be_checked():
    """depth x hidden x dropout x activation: 10^12 variants, counted, never listed."""
    values = ", ".join(str(i / 10**6) for i in range(10_000))
    widths = ", ".join(f"[{i}]" for i in range(1, 10_001))
    text = replace(
        "depth = 2\nhidden = 32", f"depth = 2\nhidden = [{widths}]\ndropout = [{values}]"
    )
    tracemalloc.start()
    try:
        with pytest.raises(StudyError, match="more than the limit"):
            parse_study(text, "s.toml", get_registry())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


# -- nesting --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "deep",
    [
        "x = " + "[" * 5000 + "]" * 5000,
        "x = " + "{a = " * 5000 + "1" + "}" * 5000,
        ".".join(["a"] * 5000) + " = 1",
        "[" + ".".join(["a"] * 5000) + "]",
        "x = " + "[" * 5000,  # not even valid TOML: still no RecursionError
    ],
    ids=["arrays", "inline tables", "dotted key", "table header", "unclosed"],
)
def test_deep_nesting_is_a_study_error_with_a_line(deep, cli, write_study):
    result = cli("validate", write_study(TINY_STUDY + "\n" + deep + "\n"))
    assert result.code == 2, result.output
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert f"study.toml:34: nests tables or lists more than {MAX_NESTING} levels deep" in (
        result.output
    )


def test_nesting_a_study_needs_is_well_within_the_limit(cli, write_study):
    text = replace("hidden = 32", "hidden = [[32], [32, 16]]")
    assert cli("validate", write_study(text)).code == 0


def test_a_toml_syntax_error_keeps_its_line(cli, write_study):
    text = replace("batch_size = 32", "batch_size = = 32")
    result = cli("validate", write_study(text))
    assert result.code == 2
    assert "study.toml:28: invalid TOML" in result.output


# -- values that would fail at the first run fail in validate -------------------------------------


def test_a_seed_beyond_32_bits_is_refused_by_validate(cli, write_study, db):
    result = cli("run", write_study(replace("seeds = [0]", "seeds = [2147483648]")), "--db", db)
    assert result.code == 2
    assert "study.toml:3: study.seeds: 2147483648 is out of range" in result.output
    assert "allowed: integer in [0, 2147483647], or a list of them" in result.output
    assert not db.exists()


def test_the_largest_32_bit_seed_is_accepted(cli, write_study):
    result = cli("validate", write_study(replace("seeds = [0]", "seeds = [2147483647]")))
    assert result.code == 0, result.output


def test_an_empty_seed_list_gets_one_message(cli, write_study):
    result = cli("validate", write_study(replace("seeds = [0]", "seeds = []")))
    assert result.code == 2
    assert "1 problem(s)" in result.output
    assert "study.toml:3: study.seeds: is an empty list" in result.output
    assert "cannot be swept" not in result.output


def test_an_array_of_study_tables_is_located(cli, write_study):
    result = cli("validate", write_study(replace("[study]", "[[study]]")))
    assert result.code == 2
    assert "1 problem(s)" in result.output
    assert "study.toml:1: study: is written [[study]] (a list of tables)" in result.output


def test_a_table_written_where_an_array_of_tables_is_expected_is_located(cli, write_study):
    text = replace('[[mapping]]\nname = "linear"\n\n[[mapping]]', "[mapping]")
    result = cli("validate", write_study(replace("depth = 2", "depth = 9", text)))
    assert result.code == 2
    assert "study.toml:17: mapping[0].depth: 9 is out of range" in result.output


def test_every_study_file_problem_is_reported_at_once(cli, write_study):
    text = replace("[study]", "[[study]]") + '\n[execution]\naddress = "head:6379"\n'
    text = replace("epochs = 3", "epochs = [" + ", ".join(map(str, range(1, 5002))) + "]", text)
    result = cli("validate", write_study(text))
    assert result.code == 2
    assert "3 problem(s)" in result.output
    for fragment in ("study: is written [[study]]", "execution.address", "train.epochs"):
        assert fragment in result.output


# -- paths that are not study files ---------------------------------------------------------------


def test_a_directory_is_a_study_error(cli, tmp_path):
    (tmp_path / "a.toml").mkdir()
    result = cli("validate", tmp_path / "a.toml")
    assert result.code == 2
    assert "a.toml: is a directory, not a study file" in result.output


def test_a_file_that_is_not_utf8_is_a_study_error_with_its_line(cli, tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(replace('name = "tiny"', 'name = "tiny"\ndescription = "caf\xe9"').encode("latin-1"))  # fmt: skip
    result = cli("validate", path)
    assert result.code == 2
    assert "latin1.toml:3: is not UTF-8 text (byte 0xe9" in result.output


def test_an_unreadable_file_is_a_study_error(cli, write_study, monkeypatch):
    path = write_study()
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    result = cli("validate", path)
    assert result.code == 2
    assert "study.toml: cannot read study file: Permission denied" in result.output


def test_a_symlink_loop_is_a_study_error(cli, tmp_path):
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    result = cli("validate", loop)
    assert result.code == 2
    assert "loop.toml: cannot read study file" in result.output


def test_a_device_is_not_read_as_a_study(cli):
    result = cli("validate", "/dev/zero")  # endless: reading it would never finish
    assert result.code == 2
    assert "/dev/zero: is not a regular file" in result.output


def test_a_file_larger_than_a_study_is_refused_unread(cli, write_study):
    result = cli("validate", write_study(TINY_STUDY + "#" * (2 << 20) + "\n"))
    assert result.code == 2
    assert "is larger than 1 MiB" in result.output


# -- the cluster address is not the study file's to choose ----------------------------------------


def test_the_study_file_cannot_name_a_ray_cluster(cli, write_study, db):
    text = TINY_STUDY + '\n[execution]\nexecutor = "ray"\naddress = "ray://attacker:10001"\n'
    result = cli("run", write_study(text), "--db", db)
    assert result.code == 2
    assert "study.toml:36: execution.address: a study file cannot choose the Ray cluster" in (
        result.output
    )
    assert "--address ADDRESS, or XMODAL_RAY_ADDRESS=ADDRESS" in result.output
    assert not db.exists()


@pytest.fixture
def captured_address(monkeypatch):
    """Stop `xmodal run` where it hands the address to the runner, and keep what it got."""
    seen: dict[str, object] = {}

    def fake_run_study(*args, **kwargs):
        seen["address"] = kwargs.get("address")
        raise XmodalError("stopped before running")

    monkeypatch.setattr("xmodal.runner.run_study", fake_run_study)  # cli imports it per call
    return seen


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [
        (None, None, None),
        ("head:6379", None, "head:6379"),
        ("head:6379", "other:6379", "other:6379"),
    ],
)
def test_the_cluster_address_comes_from_the_flag_or_the_environment(
    env, flag, expected, cli, write_study, db, monkeypatch, captured_address
):
    monkeypatch.delenv("XMODAL_RAY_ADDRESS", raising=False)
    if env is not None:
        monkeypatch.setenv("XMODAL_RAY_ADDRESS", env)
    args = ["--address", flag] if flag else []
    result = cli("run", write_study(), "--db", db, *args)
    assert "stopped before running" in result.output, result.output
    assert captured_address["address"] == expected
