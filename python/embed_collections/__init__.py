"""embed-collections' Python side: the model fetcher (``python -m embed_collections.fetch_models``, which
``embed-collections fetch-models`` runs).

The tool itself is the ``embed-collections`` binary this package installs on PATH.
"""
