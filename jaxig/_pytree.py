"""Immutable dataclass pytrees for rules, paths and records, without a Flax dependency.

A subclass of :class:`Module` becomes a frozen dataclass registered with
``jax.tree_util.register_dataclass``: fields are pytree children (traced, vmapped, differentiated)
unless declared ``static_field()``, in which case they are part of the tree structure (hashed into
the cache key of a compiled program).
"""

from __future__ import annotations

import dataclasses
from typing import Any, dataclass_transform

import jax

__all__ = ["Module", "static_field"]


def static_field(**kwargs: Any) -> Any:
    """Returns a dataclass field that is part of the tree structure, not a traced leaf."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def _is_static(f: dataclasses.Field) -> bool:
    # flax.struct.field(pytree_node=False), the way settings were declared before, means the same
    return bool(f.metadata.get("static", False)) or f.metadata.get("pytree_node", True) is False


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, static_field))
class Module:
    """Base class: every subclass is a frozen dataclass and a registered pytree."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        data = [f.name for f in fields if not _is_static(f)]
        meta = [f.name for f in fields if _is_static(f)]
        jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)

    def replace(self, **changes: Any) -> Any:
        """Returns a copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]
