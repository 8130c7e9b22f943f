"""JSON read from a file or string that a user gave, or could have damaged: bad content is an InputError.

A plain ``json.loads`` raises ``JSONDecodeError`` (a ValueError), ``UnicodeDecodeError`` or, for a document
nested thousands deep, ``RecursionError``; none of those names the file, and the last is not even a
ValueError. Entry points report only InputError as bad input, so every reader of such JSON goes through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steering.errors import InputError, ValidationError


def loads(text: str | bytes, where: str, error: type[InputError] = ValidationError) -> Any:
    """The document in ``text``; ``where`` names its source in the message."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply to read") from None


def read(path: str | Path, error: type[InputError] = ValidationError, expect: type | None = dict) -> Any:
    """The document in the file ``path`` (of type ``expect`` unless None). A missing or unreadable file
    stays an OSError with its file name: the entry points show that as one line too."""
    doc = loads(Path(path).read_bytes(), str(path), error)
    if expect is not None and not isinstance(doc, expect):
        raise error(f"{path}: expected a JSON {'object' if expect is dict else expect.__name__}, "
                    f"found {type(doc).__name__}")
    return doc
