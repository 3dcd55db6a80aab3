"""Reading a region config's YAML strictly: UTF-8 only, no duplicate keys, booleans traced.

PyYAML's ``safe_load`` forgives three mistakes that cost users hours later: a key written twice
keeps only its last value, ``yes``/``no``/``on``/``off`` become booleans (YAML 1.1), and a file
saved in Latin-1 fails with a bare ``UnicodeDecodeError`` that names no file. :func:`read_yaml`
refuses the first and the last with a message naming the file, the key or the line and the fix,
and reports where booleans came from, so that the region checks can tell ``values: [yes]``
(meant as the text "yes") from a real boolean.

Example:
    >>> document = read_yaml("regions/sample.yaml")  # doctest: +SKIP
    >>> document.data["name"], document.booleans  # doctest: +SKIP
    ('sample', {})
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigYamlError", "YamlBoolean", "YamlDocument", "read_yaml"]

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"

#: A position in the document: mapping keys (as written) and list indexes, from the top.
KeyPath = tuple[str | int, ...]


class ConfigYamlError(ValueError):
    """A config file cannot be read as YAML; the message names the file and what to do."""


@dataclass(frozen=True)
class YamlBoolean:
    """A scalar that YAML read as a boolean: its text as written, its value, its line (1-based)."""

    text: str
    value: bool
    line: int


@dataclass(frozen=True)
class YamlDocument:
    """A parsed config and the booleans in it, by key path (e.g. ``("labels", "values", 0)``)."""

    data: Any
    booleans: dict[KeyPath, YamlBoolean] = field(default_factory=dict)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in the same mapping.

    Keys are compared as text, so ``2024-06-01`` (a date) and ``"2024-06-01"`` (a string),
    which the region config reads as the same date, count as the same key.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(self.construct_object(key_node, deep=deep))
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def _decode(path: Path) -> str:
    """The file's text; UTF-8 (with or without a byte-order mark) only."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigYamlError(
            f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line} is not "
            "valid UTF-8; the file was probably saved as Latin-1 / Windows-1252): save it as "
            "UTF-8 (in your editor: Save As... > Encoding: UTF-8) and run the check again."
        ) from exc


def _find_booleans(node: yaml.Node, path: KeyPath, found: dict[KeyPath, YamlBoolean]) -> None:
    """Collect the boolean scalars below ``node`` by key path."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _BOOL_TAG:
            value = yaml.SafeLoader.bool_values[node.value.lower()]
            found[path] = YamlBoolean(node.value, value, node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_booleans(item, (*path, index), found)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _find_booleans(value_node, (*path, key), found)


def _parse(text: str, path: Path) -> YamlDocument:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None)
        booleans: dict[KeyPath, YamlBoolean] = {}
        _find_booleans(node, (), booleans)
        return YamlDocument(loader.construct_document(node), booleans)
    except _DuplicateKey as exc:
        raise ConfigYamlError(
            f"{path}: key {exc.key!r} appears twice in the same section (lines {exc.first} and "
            f"{exc.line}); YAML would silently keep only the last one. Delete or merge one of "
            "them."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigYamlError(f"{path} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> YamlDocument:
    """Read a YAML config strictly.

    Args:
        path: The YAML file.

    Returns:
        The parsed document and where YAML read booleans.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder; the message lists the YAML files in it.
        ConfigYamlError: The file is not UTF-8, not valid YAML, or repeats a key in a mapping.
    """
    config = Path(os.fspath(path))
    if config.is_dir():
        inside = sorted(p.name for p in config.glob("*.y*ml"))
        hint = f" It holds {', '.join(inside)}." if inside else " It holds no .yaml file."
        raise IsADirectoryError(
            f"Region config {config} is a folder, not a YAML file: pass the config file itself, "
            f"e.g. {config / (inside[0] if inside else 'region.yaml')}.{hint}"
        )
    return _parse(_decode(config), config)
