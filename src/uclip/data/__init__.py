"""Data sets and the files they live in: the lowest layer of uclip (imports nothing above it).

One module per data set (:mod:`~uclip.data.xm3600`, :mod:`~uclip.data.coco`,
:mod:`~uclip.data.flickr30k`, :mod:`~uclip.data.multi30k`, :mod:`~uclip.data.flores200`,
:mod:`~uclip.data.tatoeba`, :mod:`~uclip.data.classification`, :mod:`~uclip.data.nli`), the
record types they return (:mod:`~uclip.data.records`), language codes
(:mod:`~uclip.data.languages`), text-quality checks (:mod:`~uclip.data.text_quality`), archives
(:mod:`~uclip.data.archives`) and file helpers (:mod:`~uclip.data.io`). Loaders take explicit
paths (``data_dir``, ``images_dir``); only the CLI resolves ``--data-dir`` / ``UCLIP_DATA``.
The files and their known problems are described in ``shared/data/MANIFEST.md``.
"""
