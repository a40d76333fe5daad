"""The image search index: ``build`` writes one (``build_index``), ``query`` opens, searches and
serves it (``SearchIndex``), ``files`` is the on-disk format the two share."""
