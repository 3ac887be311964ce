"""From a detector's config and data to a model: training data from files or messages (`datasets`), the
configured `TrainOptions` (`options`), and the report written beside each version (`report`). Shared by
`monitor train`, scheduled retraining and `monitor evaluate`; the fitting itself is in `monitor.models`."""
