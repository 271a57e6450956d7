"""Online serving's data side: the online store, materialization, per-entity features and `verify`.

Import from the submodules: `store` (OnlineStore, open_store), `materialize`, `features`
(FeatureService, online_features) and `verify`; `commands` holds their CLI subcommands.
"""
