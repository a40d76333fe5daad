"""Named pretrained uCLIP models, in the spirit of open_clip's ``pretrained.py``.

The registry is data (``uclip/configs/pretrained.json``): each entry names its encoders, where its
heads live (a folder shipped in ``uclip/assets/``), their sha256, the data they were trained on,
the results file behind their numbers and (``measured``) the protocol and table itself, which
exported model cards state. Paper configurations that could not be trained here
(no CLIP image weights offline) are entries too, saying so.

:func:`resolve_model_dir` turns what a user typed into a model directory: an existing local
folder, a registry name, or a Hugging Face Hub id (``org/name``), fetched with
``huggingface_hub`` (which ``transformers`` installs).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from uclip.errors import UclipError
from uclip.paths import ASSETS_DIR, CONFIGS_DIR

REGISTRY_FILE = CONFIGS_DIR / "pretrained.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@lru_cache(maxsize=1)
def registry() -> dict[str, dict[str, Any]]:
    """Every named model, by name (see ``uclip models``)."""
    return json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))


def list_models() -> list[str]:
    return sorted(registry())


def resolve_model_dir(name_or_path: str | os.PathLike[str]) -> Path:
    """A local model directory for a folder path, a registry name or a Hub id (in that order).

    Raises :class:`UclipError` with one line when the name is unknown, names a model that was not
    trained here, or the Hub cannot be reached (offline: it names the id and HF_HUB_OFFLINE).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or path.is_absolute() or name.startswith((".", "~")):
        raise UclipError(
            f"{path} is not a uclip model directory (it does not exist or is a file): pass the "
            "output directory of `uclip train` / `uclip quickstart`, or a name from `uclip models`"
        )
    entry = registry().get(name)
    if entry is not None:
        if not entry.get("path"):
            raise UclipError(f"pretrained model {name!r} is listed but {entry['status']}")
        return ASSETS_DIR / entry["path"]
    if _HUB_ID.match(name) and not path.exists():
        return _from_hub(name)
    raise UclipError(
        f"{name!r} is neither a model directory, a pretrained name ({', '.join(list_models())}) "
        "nor a Hugging Face Hub id (org/name)"
    )


def expected_sha256(name: str) -> str | None:
    """The registry's heads sha256 for ``name`` (``None`` for folders and Hub ids)."""
    entry = registry().get(str(name))
    return entry.get("heads_sha256") if entry else None


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        # A uCLIP folder's files, or a CLT one's (uclip.load tells them apart by config.json).
        files = ["config.json", "heads.safetensors", "model.safetensors"]
        local = snapshot_download(repo_id, allow_patterns=files)
    except Exception as exc:  # the hub raises many types (offline, 404, auth): all one message
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        hint = (
            "HF_HUB_OFFLINE is set, so only the local Hugging Face cache is read"
            if offline
            else "check the id and the network, or set HF_HUB_OFFLINE=1 to use the local cache"
        )
        raise UclipError(
            f"cannot fetch uclip model {repo_id!r} from the Hugging Face Hub "
            f"({type(exc).__name__}): {hint}"
        ) from None
    return Path(local)
