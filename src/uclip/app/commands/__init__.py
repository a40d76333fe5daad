"""The ``uclip`` commands, one module per command named after it (``uclip extract-merge`` is
``extract_merge.py``), like transformers' ``commands/``. Each module has ``register(subparsers)``,
which adds its parser, and the run function(s) that parser calls; ``uclip.cli`` only registers
them. The work happens in the runners of :mod:`uclip.app` and in the library.
"""
