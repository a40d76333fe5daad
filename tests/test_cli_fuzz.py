"""Fuzz the CLI's argument and config surface (issue 13): every generated config or command line
ends in exit 0 or in one ``uclip: error:`` line, never a traceback.

Fast by construction: configs go through ``info --no-frozen`` (no encoder is built) and through
``train`` with a missing data directory (it stops after validating the config); quickstart and
random command lines run with encoder building replaced by a sentinel, so whatever passes
validation stops right there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uclip.cli import main
from uclip.encoders.registry import list_specs
from uclip.method.data import UCLIPData
from uclip.method.model import UCLIPConfig
from uclip.method.objective import UCLIPHyperParams
from uclip.paths import ASSETS_DIR
from uclip.train.args import TrainArgs

# UCLIP_FUZZ_EXAMPLES=5000 runs a longer, randomised search (locally; CI keeps the fixed 100).
LONG_RUN = int(os.environ.get("UCLIP_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=LONG_RUN or 100,
    deadline=None,
    derandomize=not LONG_RUN,  # the same examples on every CI run: a failure reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class ReachedTheWork(Exception):
    """Raised instead of building an encoder: the input passed every check."""


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    def sentinel(*args, **kwargs):
        raise ReachedTheWork

    for module in ("uclip.app.quickstart", "uclip.app.train"):
        monkeypatch.setattr(f"{module}.build_encoder", sentinel)
    monkeypatch.chdir(tmp_path)  # default --out folders land here
    return tmp_path


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, or a one-line usage error
            code = int(exc.code or 0)
        except ReachedTheWork:
            code = 0
    return code, err.getvalue()


def assert_clean(argv: list[str], code: int, err: str) -> None:
    assert "Traceback" not in err, (argv, err)
    if code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1, (argv, code, err)
        assert lines[0].startswith("uclip: error: "), (argv, err)


# Text as it can arrive on a command line: no NUL (argv cannot hold one), no lone surrogates.
ARG_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-3, 600)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
ENCODERS = [s.name for s in list_specs()]


def section(cls: type) -> st.SearchStrategy:
    """Sections that mostly use the class's keys, with plausible or hostile values, and typos."""
    names = st.sampled_from([f.name for f in fields(cls)])
    keys = st.integers(0, 9).flatmap(lambda i: names if i else st.text(min_size=1, max_size=8))
    return st.dictionaries(keys, SCALARS | JSON_VALUES, max_size=4)


PLAUSIBLE_MODEL = st.fixed_dictionaries(
    {
        "anchor_encoder": st.sampled_from(ENCODERS),
        "multilingual_encoder": st.sampled_from(ENCODERS),
    },
    optional={
        "image_encoder": st.sampled_from(ENCODERS) | SCALARS,
        "embed_dim": st.integers(1, 64) | SCALARS,
        "head": st.sampled_from(["mlp", "linear", "residual"]) | SCALARS,
        "hidden_dim": st.none() | st.integers(1, 64) | SCALARS,
        "random_init": st.booleans() | SCALARS,
        "encoder_paths": st.dictionaries(st.text(max_size=4), st.text(max_size=4)) | JSON_VALUES,
    },
)
SECTIONED = st.fixed_dictionaries(
    {"model": st.one_of(PLAUSIBLE_MODEL, PLAUSIBLE_MODEL, PLAUSIBLE_MODEL, section(UCLIPConfig))},
    optional={
        "train": section(TrainArgs),
        "method": section(UCLIPHyperParams),
        "data": section(UCLIPData),
        "description": JSON_VALUES,
    },
)
# Mostly sectioned configs (to reach the field checks), sometimes any JSON or a typo'd section.
CONFIGS = st.integers(0, 9).flatmap(
    lambda i: (
        SECTIONED
        if i < 7
        else JSON_VALUES
        if i < 9
        else SECTIONED.map(lambda c: {**c, "trian": {}})
    )
)


def write(config: object, form: str, directory: Path) -> Path:
    if form == "json":
        path, data = directory / "c.json", json.dumps(config).encode()
    elif form == "yaml":
        path, data = directory / "c.yaml", yaml.safe_dump(config, allow_unicode=True).encode()
    else:  # a file that is not text at all
        path, data = directory / "c.json", bytes(str(config), "utf-8", "surrogatepass")[::-1]
    path.write_bytes(data)
    return path


@FUZZ
@given(config=CONFIGS, form=st.sampled_from(["json", "yaml", "bytes"]))
def test_generated_configs_end_in_exit_0_or_one_line(sandbox: Path, config, form) -> None:
    with tempfile.TemporaryDirectory(dir=sandbox) as tmp:
        path = write(config, form, Path(tmp))
        for argv in (
            ["info", str(path), "--no-frozen"],
            ["train", str(path), "--out", f"{tmp}/out", "--data-dir", f"{tmp}/missing"],
        ):
            assert_clean(argv, *run_cli(argv))


INTS = st.integers(-(2**40), 2**40).map(str) | st.integers(-2, 3).map(str) | ARG_TEXT


@FUZZ
@given(
    langs=st.none()
    | ARG_TEXT
    | st.lists(st.sampled_from(["cs", "ja", "xx", "", "en"])).map(",".join),
    sizes=st.dictionaries(
        st.sampled_from(["--n-train", "--n-bank-v", "--max-steps", "--flores-pairs", "--seed"]),
        INTS,
    ),
    out=st.sampled_from(["out", "file", "file/sub", "o" * 300]) | ARG_TEXT,
    data=st.sampled_from(["bundled", "empty", "file", "missing"]),
)
def test_quickstart_arguments_end_in_exit_0_or_one_line(
    sandbox: Path, langs, sizes, out, data
) -> None:
    (sandbox / "file").write_text("")
    (sandbox / "empty").mkdir(exist_ok=True)
    data_dir = str(ASSETS_DIR / "quickstart") if data == "bundled" else data
    argv = ["quickstart", "--out", out, "--data-dir", data_dir, "--no-progress"]
    if langs is not None:
        argv += ["--langs", langs]
    for flag, value in sizes.items():
        argv.append(f"{flag}={value}")  # "=": a value may start with "-"
    assert_clean(argv, *run_cli(argv))


COMMANDS = ["info", "train", "quickstart", "serve", "export", "index", "encoders", "eval"]
TOKENS = st.sampled_from(
    ["--out", "--data-dir", "--model", "--port", "--format", "--langs", "--resume", "--index",
     "--random-init", "--overwrite", "--no-frozen", "-v", "hf", "onnx", "build", "99999", "-1",
     "missing.json", "", "--images", "--host", "::1", "localhost"]
) | ARG_TEXT  # fmt: skip


@FUZZ
@given(command=st.sampled_from(COMMANDS), rest=st.lists(TOKENS, max_size=6))
def test_random_command_lines_end_in_exit_0_or_one_line(sandbox: Path, command, rest) -> None:
    argv = [command, *rest]
    assert_clean(argv, *run_cli(argv))


@FUZZ
@given(
    port=st.integers(-(2**20), 2**20),
    host=st.sampled_from(["127.0.0.1", "::1", "localhost", "0.0.0.0"]),
)
def test_serve_ports_and_hosts_end_in_one_line(sandbox: Path, port: int, host: str) -> None:
    argv = ["serve", "--index", "idx", "--model", "model", "--host", host, "--port", str(port)]
    code, err = run_cli(argv)
    assert code == 2
    assert_clean(argv, code, err)


# Readers of the files uclip writes (issue 23): a run JSON, quality.json or wall_time.jsonl with
# any field replaced by any JSON value (NaN included) is read, or refused with one line.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
RUN_RECORD = {
    "format": "uclip-eval-run/1",
    "task": "bitext",
    "model": "m",
    "weights": "real",
    "dataset": "flores200",
    "lang": "deu_Latn",
    "protocol": "p",
    "metrics": {"x2en_acc": 50.0},
    "primary_metric": "x2en_acc",
    "sizes": {"pairs": 10},
    "limit": None,
}
WALL_TIME_RECORD = {"lang": "deu_Latn", "runs_written": 8, "wall_s": 2.5, "threads": 1}
QUALITY_RECORD = {
    "lines": 10,
    "empty": 0.0,
    "duplicated": 0.0,
    "loops": 0.0,
    "copied_english": 0.0,
    "bad_lines": 0.0,
    "script_share": 1.0,
}


def _one_line_or_read(read: object, path: Path, name: str) -> object:
    from uclip.errors import UclipError

    try:
        return read(path)  # type: ignore[operator]
    except UclipError as exc:
        assert "\n" not in str(exc)
        assert name in str(exc) or "no uclip eval runs" in str(exc)
        return None


@FUZZ
@given(
    record=st.sampled_from(["run", "wall", "quality"]),
    key=st.sampled_from(sorted({*RUN_RECORD, *WALL_TIME_RECORD, *QUALITY_RECORD, "extra"})),
    value=JSON_VALUES,
    drop=st.booleans(),
)
def test_readers_of_written_records_read_or_refuse_in_one_line(record, key, value, drop) -> None:
    from uclip.app.languages import read_quality, wall_time_summary
    from uclip.eval.languages import index_results
    from uclip.eval.runs import load_results

    base = {"run": RUN_RECORD, "wall": WALL_TIME_RECORD, "quality": QUALITY_RECORD}[record]
    changed = {k: v for k, v in base.items() if not (drop and k == key)}
    if not drop:
        changed[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if record == "run":
            path = root / "run.json"
            path.write_text(json.dumps(changed))
            results = _one_line_or_read(load_results, root, path.name)
            if results is not None:
                index_results(results)  # what a report builds its rows from
                json.dumps([r.to_dict() for r in results], allow_nan=False)
        elif record == "wall":
            path = root / "wall_time.jsonl"
            path.write_text(json.dumps(changed) + "\n")
            summary = _one_line_or_read(wall_time_summary, path, path.name)
            if summary is not None:
                json.dumps(summary, allow_nan=False)
        else:
            path = root / "quality.json"
            path.write_text(json.dumps({"deu_Latn": {"flores": changed}}))
            _one_line_or_read(read_quality, path, path.name)
