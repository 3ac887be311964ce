"""Files at the edge: JSON-lines points in (a file or stdin), alert events out as JSON lines.

`monitor run --input FILE` replays captured topics (`kcat -C ... | monitor run --input -`) through the
same engine as the daemon, on machines where no broker runs yet.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from typing import IO

from monitor.errors import InputError
from monitor.records import Alert, Message, Rejected, encode_alert

log = logging.getLogger(__name__)

BATCH_LINES = 2000


class FileSource:
    """Hands over a file's non-empty lines in batches; `poll` returns None once the file is exhausted."""

    def __init__(self, path: str) -> None:
        self.name = "stdin" if path == "-" else path
        try:
            self._file: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
        self._lines = self._numbered()

    def _numbered(self) -> Iterator[Message]:
        for number, line in enumerate(self._file, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield Message(line, None, self.name, 0, number)

    def poll(self) -> list[Message] | None:
        batch = [m for _, m in zip(range(BATCH_LINES), self._lines, strict=False)]
        return batch or None

    def assigned(self) -> bool:
        return True

    def commit(self, limits: Mapping[int, int] | None = None) -> None:
        """Nothing to store: a file is replayed from its start each time."""

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None:
        if self._file is not sys.stdin.buffer:
            self._file.close()


class StdoutSink:
    """Prints alert events as JSON lines; dead letters are logged with their line number."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out or sys.stdout.buffer

    def publish(self, alert: Alert) -> None:
        self.out.write(encode_alert(alert) + b"\n")

    def dead_letter(self, message: Message, rejected: Rejected) -> None:
        log.warning("%s line %d rejected (%s): %s", message.topic, message.offset, rejected.reason, rejected.detail)

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.flush()
