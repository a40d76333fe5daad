"""Sharded extraction: contiguous split, independent atomic shards, kill-and-rerun, merge."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from uclip.errors import UclipError
from uclip.features.banks import MemoryBank
from uclip.features.sharding import (
    extract_shard,
    merge_shards,
    parse_shard,
    read_inputs,
    shard_from_env,
    shard_range,
    shard_status,
)

TEXTS = [f"caption number {i}" for i in range(23)]


class HashEncoder:
    """Deterministic text 'encoder': unit vectors from sha256 of each text; optional delay."""

    name = "hash-encoder"
    weights_id = "sha256-v1"
    weights = "random-init"
    modality = "text"
    dim = 6

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.delay)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:6], np.uint8) for t in texts]
        x = torch.tensor(np.stack(rows), dtype=torch.float32) - 127.5
        return torch.nn.functional.normalize(x, dim=-1)


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_sharding import HashEncoder, TEXTS
from uclip.features.sharding import extract_shard
enc = HashEncoder(delay=0.4)
extract_shard(enc, TEXTS, {out!r}, 1, 2, batch_size=2, shard_size=4, progress=False)
"""


def reference() -> np.ndarray:
    return HashEncoder().encode(TEXTS).numpy()


def test_shard_range_tiles_the_inputs_like_memory_bank_shard() -> None:
    for n in range(0, 30):
        for shards in range(1, 8):
            ranges = [shard_range(n, i, shards) for i in range(shards)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            sizes = [b - a for a, b in ranges]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            if n >= shards:
                bank = MemoryBank.from_tensor(torch.arange(n, dtype=torch.float32)[:, None])
                for i, (a, b) in enumerate(ranges):
                    part = bank.shard(i, shards).to_tensor()[:, 0]
                    assert part.tolist() == list(range(a, b))


def test_parse_shard() -> None:
    assert parse_shard("3/8") == (3, 8)
    assert parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("8/8", "a/b", "3", "-1/4", "1/0"):
        with pytest.raises(UclipError):
            parse_shard(bad)


def test_shard_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert shard_from_env() is None
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert shard_from_env() == (2, 4)


def test_shards_merge_into_the_whole_extraction(tmp_path: Path) -> None:
    enc = HashEncoder()
    results = [
        extract_shard(enc, TEXTS, tmp_path, i, 3, shard_size=4, progress=False) for i in (2, 0, 1)
    ]
    assert all(r.computed for r in results)
    assert [r.info.stop - r.info.start for r in sorted(results, key=lambda r: r.info.index)] == [
        8,
        8,
        7,
    ]
    merged = merge_shards(tmp_path)
    arr = np.load(merged, mmap_mode="r")
    assert isinstance(arr, np.memmap)
    np.testing.assert_allclose(arr, reference(), rtol=0, atol=0)
    assert MemoryBank.from_npy(merged).to_tensor().shape == (23, 6)
    meta = json.loads(merged.with_suffix(".json").read_text())
    assert meta["count"] == 23 and meta["encoder"] == "hash-encoder"


def test_rerun_keeps_finished_shards_and_redoes_damaged_ones(tmp_path: Path) -> None:
    for i in range(2):
        extract_shard(HashEncoder(), TEXTS, tmp_path, i, 2, progress=False)
    enc = HashEncoder()
    assert not extract_shard(enc, TEXTS, tmp_path, 0, 2, progress=False).computed
    assert enc.calls == 0
    # a flipped byte in shard 1's array fails its checksum: shard 1 is redone (from its cache)
    npy = tmp_path / "shard-00001-of-00002.npy"
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    with pytest.raises(UclipError, match="checksum"):
        merge_shards(tmp_path)
    assert extract_shard(enc, TEXTS, tmp_path, 1, 2, progress=False).computed
    np.testing.assert_array_equal(np.load(merge_shards(tmp_path)), reference())


def test_changed_inputs_are_not_mistaken_for_done(tmp_path: Path) -> None:
    extract_shard(HashEncoder(), TEXTS, tmp_path, 0, 2, progress=False)
    other = [*TEXTS[:-1], "a different last caption"]
    assert extract_shard(HashEncoder(), other, tmp_path, 0, 2, progress=False).computed
    extract_shard(HashEncoder(), TEXTS, tmp_path, 1, 2, progress=False)
    with pytest.raises(UclipError, match="different extractions"):
        merge_shards(tmp_path)


def test_merge_names_missing_shards(tmp_path: Path) -> None:
    extract_shard(HashEncoder(), TEXTS, tmp_path, 1, 4, progress=False)
    assert shard_status(tmp_path) == (4, [0, 2, 3])
    with pytest.raises(UclipError, match=r"3 of 4 shards are missing .*0, 2, 3.*--shard i/4"):
        merge_shards(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UclipError, match="no finished shards"):
        merge_shards(empty)


def test_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(UclipError, match="cannot fill"):
        extract_shard(HashEncoder(), TEXTS[:3], tmp_path, 0, 4, progress=False)
    with pytest.raises(UclipError, match="does not exist"):
        merge_shards(tmp_path / "nowhere")


def test_killed_worker_is_redone_and_others_kept(tmp_path: Path) -> None:
    """SIGKILL the worker of shard 1 mid-shard; a rerun of every worker redoes only shard 1,
    resuming it from the cache shards it had finished, and the merge is exact."""
    out = tmp_path / "emb"
    first = extract_shard(HashEncoder(), TEXTS, out, 0, 2, progress=False)
    assert first.computed
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(tests=tests, out=str(out))],
        env={**os.environ, "PYTHONPATH": tests},
    )
    cache_files = lambda: list((out / "cache").glob("*/*.safetensors"))  # noqa: E731
    before = len(cache_files())  # shard 0's cache shards
    deadline = time.time() + 60
    while time.time() < deadline and len(cache_files()) < before + 1 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "shard-00001-of-00002.json").exists(), "shard 1 finished before the kill"
    assert len(cache_files()) > before, "shard 1 had not cached anything before the kill"
    rerun = [
        extract_shard(HashEncoder(), TEXTS, out, i, 2, shard_size=4, progress=False)
        for i in range(2)
    ]
    assert [r.computed for r in rerun] == [False, True]
    np.testing.assert_array_equal(np.load(merge_shards(out)), reference())
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_read_inputs(tmp_path: Path) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("a cat\n\n  a dog  \n")
    assert read_inputs(texts, "text") == ["a cat", "a dog"]
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "b.png").write_bytes(b"x")
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"x")
    assert [Path(p).name for p in read_inputs(tmp_path / "imgs", "image")] == ["a.jpg", "b.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("imgs/a.jpg\n/abs/c.png\n")
    assert read_inputs(listing, "image") == [str(tmp_path / "imgs" / "a.jpg"), "/abs/c.png"]
    with pytest.raises(UclipError, match="folder"):
        read_inputs(tmp_path / "imgs", "text")


def test_cli_extract_and_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from uclip.app.commands import extract, extract_merge
    from uclip.encoders import registry

    monkeypatch.setattr(registry, "build_encoder", lambda name, **kw: HashEncoder())
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    inputs = tmp_path / "captions.txt"
    inputs.write_text("\n".join(TEXTS) + "\n")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    extract.register(sub)
    extract_merge.register(sub)
    out = tmp_path / "emb"
    argv = ["extract", "--encoder", "x", "--inputs", str(inputs), "--out", str(out)]
    reports = []
    for shard in ("1/2", "0/2"):
        ns = parser.parse_args([*argv, "--shard", shard, "--no-progress"])
        assert ns.func(ns) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["rows"] == [12, 23] and reports[0]["shards_missing"] == [0]
    assert reports[1]["shards_missing"] == [] and "extract-merge" in reports[1]["next"]
    ns = parser.parse_args(["extract-merge", "--out", str(out)])
    assert ns.func(ns) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == len(TEXTS)
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"), reference())
