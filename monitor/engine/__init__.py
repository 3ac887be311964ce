"""The engine: points in, verdicts and alert events out, with no I/O.

Per-series ring buffers (`windows`), rolling thresholds (`threshold`), the alert lifecycle (`alerting`),
series selection and multivariate entities (`entities`), and the detector that composes them (`detector`)
around the `Scorer` protocol (`scoring`), the seam to the models. Imports no Kafka, torch or
prometheus_client (import-linter checks it), so it is tested fast and replayed offline by `monitor evaluate`.
"""
