"""How the toy world's shipped models were made: the tiny base model and the oracle.

``train_base`` (with ``base_model``, ``base_stages``, ``base_report``) trains
``creaturekit/assets/toy-base``; ``train_oracle`` trains ``creaturekit/assets/toy``.
See docs/toy-world.md.
"""
