"""Kafka at the edge, and the only home of kafka-python: the metrics source (`source`), the alert,
dead-letter and state sink (`sink`), the compacted state changelog (`changelog`), the range reads and
produce of the command-line tools (`tools`), and client settings and topic admin (`client`)."""
