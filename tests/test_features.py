"""Embedding cache (sharded, checksummed, resumable) and memory banks."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uclip.errors import UclipError
from uclip.features.banks import (
    MemoryBank,
    build_image_bank,
    build_text_bank,
    image_files,
    read_text_files,
)
from uclip.features.cache import EmbeddingCache

torch.set_num_threads(1)


def _unit_vector(data: bytes, dim: int) -> torch.Tensor:
    """A deterministic L2-normalised vector derived from ``data`` (stands in for a real tower)."""
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


class FakeTextEncoder:
    """Follows the encoders.Encoder protocol; counts calls, can fail or slow down on purpose."""

    modality = "text"
    weights = "random-init"

    def __init__(
        self,
        dim: int = 8,
        *,
        name: str = "fake-text",
        weights_id: str = "w1",
        out_dim: int | None = None,
        fail_after: int | None = None,
        delay: float = 0.0,
        delay_after: int = 0,
    ) -> None:
        self.name, self.dim, self.weights_id = name, dim, weights_id
        self.out_dim = out_dim or dim
        self.fail_after, self.delay, self.delay_after = fail_after, delay, delay_after
        self.calls = 0
        self.rows = 0

    def encode(self, batch: list[str]) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated kill")
        self.calls += 1
        self.rows += len(batch)
        if self.delay and self.calls > self.delay_after:
            time.sleep(self.delay)
        return torch.stack([_unit_vector(s.encode("utf-8"), self.out_dim) for s in batch])


class FakeImageEncoder(FakeTextEncoder):
    modality = "image"

    def __init__(self, dim: int = 8) -> None:
        super().__init__(dim, name="fake-image")

    def encode(self, batch: list[Image.Image]) -> torch.Tensor:
        assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in batch)
        self.calls += 1
        self.rows += len(batch)
        return torch.stack([_unit_vector(np.asarray(im).tobytes(), self.dim) for im in batch])


def make_texts(n: int) -> list[str]:
    langs = ["a dog on the grass", "un chien sur l'herbe", "草の上の犬", "кошка на диване", "قطة"]
    return [f"{langs[i % len(langs)]} #{i}" for i in range(n)]


def reference(texts: list[str], dim: int = 8) -> torch.Tensor:
    return torch.stack([_unit_vector(t.encode("utf-8"), dim) for t in texts])


def shard_files(cache: EmbeddingCache, enc: FakeTextEncoder, dtype: str = "float32") -> list[Path]:
    return sorted(cache.dir_for(enc, dtype).glob("*.safetensors"))


def stats_tuple(cache: EmbeddingCache) -> tuple[int, int, int, int]:
    s = cache.last_stats
    return s.shards_total, s.shards_computed, s.shards_reused, s.shards_corrupt


KW = dict(batch_size=4, shard_size=16, progress=False)  # 50 texts -> shards of 16,16,16,2


# -- cache ----------------------------------------------------------------------------------


def test_embed_equals_encoder_and_rerun_reuses_every_shard(tmp_path):
    texts = make_texts(50)
    cache, enc = EmbeddingCache(tmp_path), FakeTextEncoder()
    first = cache.embed(enc, texts, **KW)
    assert first.dtype == torch.float32 and first.shape == (50, 8)
    torch.testing.assert_close(first, reference(texts), rtol=0, atol=0)
    assert stats_tuple(cache) == (4, 4, 0, 0)
    assert enc.calls == 4 + 4 + 4 + 1 and len(shard_files(cache, enc)) == 4

    work = cache.work[enc.name]
    assert work.rows == 50 and work.seconds > 0 and work.rows_per_second > 0

    second = cache.embed(enc, texts, **KW)
    assert stats_tuple(cache) == (4, 0, 4, 0)
    assert enc.calls == 13  # nothing re-encoded
    assert cache.work[enc.name].rows == 50  # cache hits are not work
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    assert cache.has(enc, texts, shard_size=16)
    assert not cache.has(enc, [*texts, "new"], shard_size=16)
    # Another weights_id is another cache directory: nothing shared.
    cache.embed(FakeTextEncoder(weights_id="w2"), texts, **KW)
    assert stats_tuple(cache) == (4, 4, 0, 0)


def test_changing_one_input_recomputes_only_its_shard(tmp_path):
    texts = make_texts(50)
    cache = EmbeddingCache(tmp_path)
    cache.embed(FakeTextEncoder(), texts, **KW)
    texts[20] = "a brand new caption"
    enc = FakeTextEncoder()
    out = cache.embed(enc, texts, **KW)
    assert stats_tuple(cache) == (4, 1, 3, 0)
    assert enc.rows == 16 and cache.last_stats.rows_computed == 16
    torch.testing.assert_close(out, reference(texts), rtol=0, atol=0)


def test_interrupted_run_keeps_finished_shards_and_resumes(tmp_path):
    texts = make_texts(50)
    cache = EmbeddingCache(tmp_path / "a")
    # 4 batches per shard: failing at batch 7 leaves shard 0 written and shard 1 half done.
    with pytest.raises(RuntimeError, match="simulated kill"):
        cache.embed(FakeTextEncoder(fail_after=6), texts, **KW)
    assert len(shard_files(cache, FakeTextEncoder())) == 1
    assert not list(cache.dir_for(FakeTextEncoder()).glob(".*.tmp"))

    enc = FakeTextEncoder()
    resumed = cache.embed(enc, texts, **KW)
    assert stats_tuple(cache) == (4, 3, 1, 0)
    assert enc.rows == 50 - 16
    uninterrupted = EmbeddingCache(tmp_path / "b").embed(FakeTextEncoder(), texts, **KW)
    torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["truncate", "flip_data_byte", "flip_header_byte", "empty"])
def test_corrupt_shard_is_detected_deleted_and_recomputed(tmp_path, caplog, damage):
    texts = make_texts(50)
    cache, enc = EmbeddingCache(tmp_path), FakeTextEncoder()
    cache.embed(enc, texts, **KW)
    victim = shard_files(cache, enc)[1]
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "flip_data_byte":
        data[-3] ^= 0x01
    elif damage == "flip_header_byte":
        data[20] ^= 0x01
    else:
        data = bytearray()
    victim.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="uclip.features.cache"):
        out = cache.embed(enc, texts, **KW)
    assert stats_tuple(cache) == (4, 1, 3, 1)
    assert any(
        "corrupt cache shard" in r.message and victim.name in r.message for r in caplog.records
    )
    torch.testing.assert_close(out, reference(texts), rtol=0, atol=0)
    cache.embed(enc, texts, **KW)  # the rewritten shard now verifies
    assert stats_tuple(cache) == (4, 0, 4, 0)


def test_leftover_temp_files_are_ignored_and_dead_writers_cleaned(tmp_path):
    texts = make_texts(50)
    cache, enc = EmbeddingCache(tmp_path), FakeTextEncoder()
    cache.embed(enc, texts, **KW)
    directory = cache.dir_for(enc)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    shard = shard_files(cache, enc)[0].name
    dead_tmp = directory / f".{shard}~{host}~{dead_pid}.tmp"
    live_tmp = directory / f".{shard}~{host}~{os.getpid()}.tmp"  # a writer still running
    other_host_tmp = directory / f".{shard}~another-host~{dead_pid}.tmp"
    for tmp in (dead_tmp, live_tmp, other_host_tmp):
        tmp.write_bytes(b"half a shard")

    out = cache.embed(enc, texts, **KW)
    assert stats_tuple(cache) == (4, 0, 4, 0)
    torch.testing.assert_close(out, reference(texts), rtol=0, atol=0)
    assert not dead_tmp.exists()
    assert live_tmp.exists() and other_host_tmp.exists()

    old = time.time() - 2 * 24 * 3600  # too old for any writer to still be at it
    os.utime(other_host_tmp, (old, old))
    cache.embed(enc, texts, **KW)
    assert not other_host_tmp.exists() and live_tmp.exists()


def test_float16_storage_is_close_returns_float32_and_halves_disk(tmp_path):
    texts = make_texts(200)
    cache = EmbeddingCache(tmp_path)
    kw = dict(batch_size=32, shard_size=64, progress=False)
    full = cache.embed(FakeTextEncoder(), texts, dtype="float32", **kw)
    half = cache.embed(FakeTextEncoder(), texts, dtype="float16", **kw)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0, atol=1e-3)
    # Values are the fp16-rounded ones whether computed now or read back.
    torch.testing.assert_close(half, full.half().float(), rtol=0, atol=0)
    again = cache.embed(FakeTextEncoder(), texts, dtype="float16", **kw)
    assert cache.last_stats.shards_reused == 4
    torch.testing.assert_close(again, half, rtol=0, atol=0)

    def tensor_bytes(dtype: str) -> int:
        return sum(p.stat().st_size for p in shard_files(cache, FakeTextEncoder(), dtype))

    assert tensor_bytes("float16") < 0.6 * tensor_bytes("float32")


def test_extract_to_bank_equals_in_memory_embedding(tmp_path):
    texts = make_texts(50)
    cache = EmbeddingCache(tmp_path / "cache")
    in_memory = cache.embed(FakeTextEncoder(), texts, **KW)
    out = cache.extract_to_bank(FakeTextEncoder(), texts, tmp_path / "banks" / "m.npy", **KW)
    assert out == tmp_path / "banks" / "m.npy"
    assert cache.last_stats.shards_reused == 4
    arr = np.load(out, mmap_mode="r")
    assert arr.shape == (50, 8) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, in_memory.numpy())
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.npy"]  # no temp file left

    half = cache.extract_to_bank(
        FakeTextEncoder(), texts, tmp_path / "m16.npy", dtype="float16", **KW
    )
    arr16 = np.load(half, mmap_mode="r")
    assert arr16.dtype == np.float16
    np.testing.assert_allclose(arr16.astype(np.float32), in_memory.numpy(), atol=1e-3, rtol=0)
    assert half.stat().st_size < 0.6 * out.stat().st_size
    bank = MemoryBank.from_npy(out)
    assert bank.is_memmap
    torch.testing.assert_close(torch.cat(list(bank.chunks(7))), in_memory, rtol=0, atol=0)


def _write_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).save(path)


def test_image_cache_hashes_file_content_not_path_or_mtime(tmp_path):
    folder = tmp_path / "imgs"
    for i in range(9):
        _write_image(folder / f"sub{i % 2}" / f"{i}.png", i)
    (folder / "notes.txt").write_text("not an image")
    paths = image_files(folder)
    assert len(paths) == 9
    cache, enc = EmbeddingCache(tmp_path / "cache"), FakeImageEncoder()
    kw = dict(batch_size=2, shard_size=4, progress=False)
    out = cache.embed(enc, paths, **kw)
    expected = torch.stack(
        [_unit_vector(np.asarray(Image.open(p).convert("RGB")).tobytes(), 8) for p in paths]
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert stats_tuple(cache) == (3, 3, 0, 0)

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    for p in copy.rglob("*.png"):
        os.utime(p, (1, 1))
    cache.embed(enc, [str(p) for p in image_files(copy)], **kw)
    assert stats_tuple(cache) == (3, 0, 3, 0)

    _write_image(paths[5], seed=99)  # same path, new pixels -> only shard 1 recomputed
    out = cache.embed(enc, paths, **kw)
    assert stats_tuple(cache) == (3, 1, 2, 0)
    new = _unit_vector(np.asarray(Image.open(paths[5]).convert("RGB")).tobytes(), 8)
    torch.testing.assert_close(out[5], new, rtol=0, atol=0)


def test_progress_bar_counts_batches_and_shows_cached_shards(tmp_path, capsys):
    texts = make_texts(50)
    cache = EmbeddingCache(tmp_path)
    cache.embed(FakeTextEncoder(), texts, batch_size=4, shard_size=16, desc="bank M")
    cache.embed(FakeTextEncoder(), texts, batch_size=4, shard_size=16, desc="bank M")
    err = capsys.readouterr().err
    assert "bank M" in err and "13/13" in err and "cached=4" in err


def test_killed_process_leaves_no_corrupt_shard_and_rerun_completes(tmp_path):
    root = tmp_path / "cache"
    texts = make_texts(64)  # 8 shards of 8, 2 batches each
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        torch.set_num_threads(1)
        from test_features import FakeTextEncoder, make_texts
        from uclip.features.cache import EmbeddingCache
        enc = FakeTextEncoder(delay=0.3, delay_after=4)  # shards 0-1 fast, then 0.6 s per shard
        EmbeddingCache({str(root)!r}).embed(
            enc, make_texts(64), batch_size=4, shard_size=8, progress=False
        )
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    directory = EmbeddingCache(root).dir_for(FakeTextEncoder())
    deadline = time.monotonic() + 60
    try:
        while not list(directory.glob("*.safetensors")):
            if proc.poll() is not None:
                pytest.fail(f"embedding subprocess exited early: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no shard appeared within 60 s")
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    n_before = len(list(directory.glob("*.safetensors")))
    assert 1 <= n_before < 8

    cache = EmbeddingCache(root)
    out = cache.embed(FakeTextEncoder(), texts, batch_size=4, shard_size=8, progress=False)
    total, computed, reused, corrupt = stats_tuple(cache)
    assert (total, reused, corrupt) == (8, n_before, 0) and computed == 8 - n_before
    torch.testing.assert_close(out, reference(texts), rtol=0, atol=0)
    assert not list(directory.glob(".*.tmp"))


def test_cache_errors_are_one_line_and_actionable(tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(UclipError, match="no inputs to embed with fake-text"):
        cache.embed(FakeTextEncoder(), [], progress=False)
    with pytest.raises(UclipError, match="must be a list"):
        cache.embed(FakeTextEncoder(), "a single string", progress=False)
    with pytest.raises(UclipError, match=r"encoder bad-dim returned shape \(3, 6\).*\(3, 8\)"):
        cache.embed(FakeTextEncoder(name="bad-dim", out_dim=6), make_texts(3), progress=False)
    with pytest.raises(UclipError, match="not supported"):
        cache.embed(FakeTextEncoder(), make_texts(3), dtype="bfloat16", progress=False)
    with pytest.raises(UclipError, match="shard_size must be a positive integer"):
        cache.embed(FakeTextEncoder(), make_texts(3), shard_size=0, progress=False)
    with pytest.raises(UclipError, match="input 1 is a int"):
        cache.embed(FakeTextEncoder(), ["ok", 3], progress=False)
    with pytest.raises(UclipError, match=r"image file .*missing\.png not found"):
        cache.embed(FakeImageEncoder(), [tmp_path / "missing.png"], progress=False)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UclipError, match=r"cannot read image .*broken\.png"):
        cache.embed(FakeImageEncoder(), [tmp_path / "broken.png"], progress=False)


def test_encoder_returning_nan_is_rejected_before_caching(tmp_path):
    class NanEncoder(FakeTextEncoder):
        def encode(self, batch):
            out = super().encode(batch)
            out[1, 0] = float("nan")
            return out

    cache = EmbeddingCache(tmp_path)
    with pytest.raises(UclipError, match="NaN/inf for input 1"):
        cache.embed(NanEncoder(name="nan"), make_texts(3), progress=False)
    assert not list(cache.dir_for(NanEncoder(name="nan")).glob("*.safetensors"))


# -- memory banks ---------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["tensor", "tensor16", "npy", "memmap"])
def test_chunks_cover_all_rows_in_order_as_float32(tmp_path, storage):
    data = torch.randn(23, 5)
    if storage == "tensor":
        bank = MemoryBank.from_tensor(data)
    elif storage == "tensor16":
        data = data.half().float()
        bank = MemoryBank.from_tensor(data.half())
        assert bank.dtype == torch.float16
    else:
        np.save(tmp_path / "b.npy", data.numpy())
        bank = MemoryBank.from_npy(tmp_path / "b.npy", mmap=storage == "memmap")
        assert bank.is_memmap == (storage == "memmap")
    assert len(bank) == 23 and bank.dim == 5
    for size in (1, 5, 23, 100):
        chunks = list(bank.chunks(size))
        assert [c.shape[0] for c in chunks] == [min(size, 23 - s) for s in range(0, 23, size)]
        assert all(c.dtype == torch.float32 and c.shape[1] == 5 for c in chunks)
        torch.testing.assert_close(torch.cat(chunks), data, rtol=0, atol=0)
    torch.testing.assert_close(bank.to_tensor(), data, rtol=0, atol=0)


@pytest.mark.parametrize("view", ["whole", "subset"])
def test_shard_partitions_rows_exactly(view):
    data = torch.arange(17 * 2, dtype=torch.float32).reshape(17, 2)
    bank = MemoryBank.from_tensor(data)
    if view == "subset":
        order = [16, 3, 4, 0, 9, 8, 1, 2, 5, 6, 7, 10, 11, 12, 13, 15]
        bank, data = bank.subset(order), data[order]
    n = len(bank)
    for world in range(1, n + 1):
        parts = [bank.shard(r, world) for r in range(world)]
        sizes = [len(p) for p in parts]
        assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes)[::-1]
        torch.testing.assert_close(torch.cat([p.to_tensor() for p in parts]), data)
    with pytest.raises(UclipError, match="cannot be split across"):
        bank.shard(0, n + 1)
    with pytest.raises(UclipError, match="rank must be in"):
        bank.shard(3, 3)


def test_sample_is_deterministic_distinct_and_reads_the_right_rows(tmp_path):
    data = torch.arange(100 * 3, dtype=torch.float32).reshape(100, 3)
    np.save(tmp_path / "b.npy", data.numpy())
    bank = MemoryBank.from_npy(tmp_path / "b.npy")
    a, b, c = bank.sample(30, seed=1), bank.sample(30, seed=1), bank.sample(30, seed=2)
    ta, tb, tc = a.to_tensor(), b.to_tensor(), c.to_tensor()
    torch.testing.assert_close(ta, tb, rtol=0, atol=0)
    assert not torch.equal(ta, tc)
    rows = (ta[:, 0] / 3).long()
    assert len(set(rows.tolist())) == 30 and torch.equal(rows, rows.sort().values)
    torch.testing.assert_close(ta, data[rows])
    # Views of views compose: a sample of a shard reads rows of that shard.
    part = bank.shard(1, 2).sample(5, seed=0).to_tensor()
    assert ((part[:, 0] / 3) >= 50).all()
    assert len(bank.sample(100, seed=0)) == 100
    with pytest.raises(UclipError, match="cannot sample 101 rows"):
        bank.sample(101, seed=0)


def test_subset_keeps_order_and_checks_range():
    data = torch.randn(6, 4)
    bank = MemoryBank.from_tensor(data)
    torch.testing.assert_close(bank.subset([5, 0, 2]).to_tensor(), data[[5, 0, 2]])
    torch.testing.assert_close(bank.subset(torch.tensor([1, 1])).to_tensor(), data[[1, 1]])
    with pytest.raises(UclipError, match="out of range"):
        bank.subset([0, 6])
    with pytest.raises(UclipError, match="non-empty 1-D"):
        bank.subset([])


def test_save_npy_round_trips_a_sampled_bank(tmp_path):
    data = torch.randn(40, 6)
    small = MemoryBank.from_tensor(data).sample(10, seed=3)
    path = small.save_npy(tmp_path / "s.npy", dtype="float16")
    loaded = MemoryBank.from_npy(path)
    assert loaded.dtype == torch.float16 and len(loaded) == 10
    torch.testing.assert_close(loaded.to_tensor(), small.to_tensor(), rtol=0, atol=1e-3)


def test_bank_validation_errors(tmp_path):
    with pytest.raises(UclipError, match=r"shape \(5,\): expected a 2-D"):
        MemoryBank.from_tensor(torch.randn(5))
    np.save(tmp_path / "flat.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(UclipError, match="expected a 2-D"):
        MemoryBank.from_npy(tmp_path / "flat.npy")
    with pytest.raises(UclipError, match="at least one row"):
        MemoryBank.from_tensor(torch.zeros(0, 4))
    with pytest.raises(UclipError, match=r"dtype torch\.int64"):
        MemoryBank.from_tensor(torch.zeros(3, 4, dtype=torch.long))
    bad = torch.randn(10, 4)
    bad[7, 2] = float("nan")
    with pytest.raises(UclipError, match="NaN/inf in row 7"):
        MemoryBank.from_tensor(bad)
    np.save(tmp_path / "nan.npy", bad.numpy())
    lazy = MemoryBank.from_npy(tmp_path / "nan.npy")  # memmap: checked as it is read
    assert len(next(lazy.chunks(4))) == 4
    with pytest.raises(UclipError, match="NaN/inf in row 7"):
        list(lazy.chunks(4))
    with pytest.raises(UclipError, match="NaN/inf in row 7"):
        MemoryBank.from_npy(tmp_path / "nan.npy", mmap=False)
    with pytest.raises(UclipError, match="not found"):
        MemoryBank.from_npy(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(UclipError, match="cannot read memory bank"):
        MemoryBank.from_npy(tmp_path / "junk.npy")
    with pytest.raises(UclipError, match="chunk_size"):
        list(MemoryBank.from_tensor(torch.randn(2, 2)).chunks(0))


def test_build_banks_go_through_the_cache(tmp_path):
    texts = make_texts(30)
    cache = EmbeddingCache(tmp_path / "cache")
    kw = dict(batch_size=4, shard_size=8, progress=False)
    m = build_text_bank(FakeTextEncoder(), texts, cache, **kw)
    assert not m.is_memmap and len(m) == 30
    torch.testing.assert_close(m.to_tensor(), reference(texts), rtol=0, atol=0)
    m_disk = build_text_bank(FakeTextEncoder(), texts, cache, out_path=tmp_path / "m.npy", **kw)
    assert m_disk.is_memmap and cache.last_stats.shards_reused == 4
    torch.testing.assert_close(m_disk.to_tensor(), m.to_tensor(), rtol=0, atol=0)

    for i in range(5):
        _write_image(tmp_path / "imgs" / f"{i}.jpg", i)
    v = build_image_bank(FakeImageEncoder(), image_files(tmp_path / "imgs"), cache, **kw)
    assert len(v) == 5 and v.dim == 8
    with pytest.raises(UclipError, match="the text bank needs an encoder with modality 'text'"):
        build_text_bank(FakeImageEncoder(), texts, cache, **kw)
    with pytest.raises(UclipError, match="the image bank needs an encoder with modality 'image'"):
        build_image_bank(FakeTextEncoder(), texts, cache, **kw)


def test_read_text_files_any_language_gz_blank_lines_and_dedup(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_bytes("\ufeffUn chat noir\r\n\r\n  猫がいる  \nUn chat noir\n".encode())
    packed = tmp_path / "b.txt.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write("Кошка спит\n\n\nقطة سوداء\n猫がいる\n")
    assert read_text_files(plain) == ["Un chat noir", "猫がいる", "Un chat noir"]
    assert read_text_files([plain, packed], dedup=True) == [
        "Un chat noir",
        "猫がいる",
        "Кошка спит",
        "قطة سوداء",
    ]
    assert len(read_text_files([plain, packed])) == 6
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(UclipError, match=r"latin1\.txt is not UTF-8"):
        read_text_files(latin1)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(UclipError, match="no non-blank lines"):
        read_text_files(blank)
    with pytest.raises(UclipError, match="not found"):
        read_text_files(tmp_path / "missing.txt")


def test_image_files_are_sorted_recursive_and_reject_empty_folders(tmp_path):
    for rel in ["b/2.PNG", "a/10.jpg", "a/9.jpeg", "c.webp", "d.gif"]:
        (tmp_path / "f" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "f" / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path / "f").as_posix() for p in image_files(tmp_path / "f")]
    assert found == ["a/10.jpg", "a/9.jpeg", "b/2.PNG", "c.webp"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "x.txt").write_text("no images")
    with pytest.raises(UclipError, match="no images"):
        image_files(tmp_path / "empty")
    with pytest.raises(UclipError, match="does not exist"):
        image_files(tmp_path / "nope")
