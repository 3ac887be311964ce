"""What operators watch, and the only home of prometheus_client: the metrics (`exporter`, `state_metrics`),
liveness and readiness (`health`), and the HTTP endpoint that serves them (`http`)."""
