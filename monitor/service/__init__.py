"""The daemon: the run loop (`loop`) between a source and a sink (`edges`; files in `files`, Kafka in
`monitor.kafka`), its wiring from a `Config` (`daemon`), state checkpoints (`checkpoint`, `checkpoint_codec`),
hot model reload (`reload`) and scheduled retraining (`retraining`)."""
