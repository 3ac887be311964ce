"""The few error types that callers treat differently; `cli.main` is the one place they become exit codes."""


class MonitorError(Exception):
    """Base of every error the monitor reports to a person instead of a traceback."""


class ConfigError(MonitorError):
    """config.yaml (or an override) is invalid; the message names the key path and the value."""


class ModelError(MonitorError):
    """A model artifact is missing, unreadable, incompatible, or there is too little data to train one."""


class InputError(MonitorError):
    """An input file or source cannot be read at all (single bad records are rejected, not raised)."""
