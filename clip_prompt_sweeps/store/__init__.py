"""The MLflow store, for the driver and the reports alike: tracking URIs, the parent/child/latest
queries, tag and artifact names, the driver's lease and the write journal."""
