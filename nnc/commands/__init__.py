"""The CLI verbs that need data, the runtime and the exporter together (train, evaluate, predict)."""
