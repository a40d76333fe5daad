"""The offline search demo's image folder: real COCO photos and CIFAR-10 images with their text.

No real image tower exists offline, so the demo index is caption-indexed: each image is found
through its own text — its COCO captions where the data has them, "a photo of a <class>" for
CIFAR-10 images — encoded by the anchor tower and f_C.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from uclip.errors import UclipError

CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def _extract(tar_path: Path, members: set[str], dest: Path) -> None:
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            if member.name in members and member.isfile():
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                if fh is None:
                    raise UclipError(f"cannot read {member.name} from {tar_path}")
                target.write_bytes(fh.read())


def prepare_demo(data_dir: Path, out: Path, cifar_per_class: int = 10) -> tuple[Path, Path]:
    """Write ``out/images/`` and ``out/captions.json``; returns both paths."""
    images_dir = data_dir / "images"
    coco_tar, cifar_tar = (
        images_dir / "coco_mini_images.tar.gz",
        images_dir / "cifar10_test_jpg.tar.gz",
    )
    for path in (coco_tar, cifar_tar, images_dir / "coco_mini_captions.jsonl"):
        if not path.is_file():
            raise UclipError(f"missing {path}: pass --data-dir with the project's data (images/)")
    records = [
        json.loads(line)
        for line in (images_dir / "coco_mini_captions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    captions: dict[str, list[str]] = {
        f"coco/{r['file_name']}": r["captions"] for r in records if r.get("captions")
    }
    dest = out / "images"
    coco_dest = dest / "coco"
    coco_dest.mkdir(parents=True, exist_ok=True)
    _extract(coco_tar, {k.removeprefix("coco/") for k in captions}, coco_dest)
    cifar = {f"test/{c}/{i:04d}.jpg": c for c in CIFAR_CLASSES for i in range(cifar_per_class)}
    cifar_dest = dest / "cifar10"
    _extract(cifar_tar, set(cifar), cifar_dest)
    for member, cls in cifar.items():
        if (cifar_dest / member).is_file():
            captions[f"cifar10/{member}"] = [f"a photo of a {cls}"]
    captions_path = out / "captions.json"
    captions_path.write_text(json.dumps(captions, indent=1, ensure_ascii=False))
    return dest, captions_path
