"""The one idiom every typed config follows: ``from_dict``, ``problems()``, ``validate()``, ``to_dict``.

A config is a frozen dataclass that inherits :class:`Config`. It says what is wrong with it in
:meth:`Config.problems` (every problem, as short phrases naming the field and the value), and
:meth:`Config.validate` turns a non-empty list into one :class:`~kfp_mlops.core.errors.ConfigError`
(or the subclass named by ``error``) that lists them all, so a user fixes a document in one go.
:meth:`Config.from_dict` refuses unknown keys with the known ones listed (a typo never silently
falls back to a default), converts JSON values (lists to tuples, nested configs) through
:meth:`Config.convert`, and validates. Mappings that are not configs (pipeline arguments, nested
overrides) use :func:`refuse_unknown` for the same message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from kfp_mlops.core.errors import ConfigError

ConfigT = TypeVar("ConfigT", bound="Config")


def refuse_unknown(
    keys: Iterable[str], known: Iterable[str], what: str, error: type[ConfigError] = ConfigError
) -> None:
    """Raises ``error`` naming every key of ``keys`` not in ``known``, and listing the known ones.

    Args:
        keys: The keys given.
        known: The keys accepted.
        what: What the keys belong to, as the message's first words (e.g. ``drift config``).
        error: The exception class raised.

    Raises:
        ConfigError: (or ``error``) ``"<what>: unknown key(s) a, b; known: x, y, z"``.
    """
    accepted = set(known)
    unknown = sorted(set(keys) - accepted)
    if unknown:
        raise error(f"{what}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(accepted))}")


class Config:
    """Base of the package's typed configs (frozen dataclasses); see the module docstring.

    Attributes:
        config_name: How messages name this config (``"stage plan"``, ``"drift config"``).
        error: The exception class :meth:`validate` and :meth:`from_dict` raise.
    """

    config_name: ClassVar[str] = "config"
    error: ClassVar[type[ConfigError]] = ConfigError

    def problems(self) -> list[str]:
        """Every problem with this config, one phrase each (empty when valid)."""
        return []

    def validate(self: ConfigT) -> ConfigT:
        """Returns the config if valid.

        Raises:
            ConfigError: (or ``error``) listing every problem :meth:`problems` finds.
        """
        found = self.problems()
        if found:
            raise self.error(f"{self.config_name} is invalid: {'; '.join(found)}")
        return self

    @classmethod
    def field_names(cls) -> list[str]:
        """The config's field names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Turns JSON values into field values (override for nested configs); lists become tuples."""
        return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls: type[ConfigT], doc: Mapping[str, Any]) -> ConfigT:
        """Builds and validates a config from a JSON-like mapping.

        Raises:
            ConfigError: (or ``error``) an unknown key, or any problem :meth:`problems` finds.
        """
        if not isinstance(doc, Mapping):
            raise cls.error(f"{cls.config_name}: expected a JSON object, got {type(doc).__name__}")
        refuse_unknown(doc, cls.field_names(), cls.config_name, cls.error)
        try:
            config = cls(**cls.convert(dict(doc)))
        except TypeError as exc:  # a nested value of the wrong shape
            raise cls.error(f"{cls.config_name}: {exc}") from None
        return config.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (the inverse of :meth:`from_dict`): tuples become lists."""
        return _jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
