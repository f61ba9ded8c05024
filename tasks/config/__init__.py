"""The settings: one immutable ``Settings`` resolved from Invoke's config, .env and the
environment; the names a config may use (``known``) and where keys are handed over
(``handover``)."""
