"""``python -m llm.models``: the model-list CLI (:mod:`llm.models_cli`).

A module of its own so that the record types in :mod:`llm.models` never import the CLI that
depends on them.
"""

from llm.models_cli import main

raise SystemExit(main())
