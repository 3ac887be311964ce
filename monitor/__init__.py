"""Streaming anomaly monitor: autoencoder scoring of Kafka metric streams with alerts and Prometheus gauges."""

__version__ = "0.1.0"
