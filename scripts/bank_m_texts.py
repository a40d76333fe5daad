"""Write a uCLIP config's bank M texts, one per line: the reference query set of the CSLS and
querybank-normalisation scorers (``uclip eval --scorer csls --scorer-reference FILE``).

    python scripts/bank_m_texts.py configs/uclip-text-anchor-news.json cache/eval/bank_m.txt

Bank M is multilingual training-side text (Multi30K de/fr/cs captions + Tatoeba sentences): it
shares no sentence with any test set, so a scorer that takes its hubness over bank M never sees
the test queries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uclip.app.train import load_run_config, training_corpora
from uclip.data.io import write_text_atomic
from uclip.paths import resolve_data_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data-dir")
    args = p.parse_args()
    corpora = training_corpora(load_run_config(args.config).data, resolve_data_dir(args.data_dir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "".join(f"{t}\n" for t in corpora.bank_m_texts))
    print(f"{len(corpora.bank_m_texts)} bank M texts -> {args.out}")


if __name__ == "__main__":
    main()
