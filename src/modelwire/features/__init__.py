"""Features: views, row validation, the ``FeatureStore`` contract, the ``FeatureService`` façade every wire
calls, ingestion from brokers and the join into predictions. No transport here (docs/features.md)."""
