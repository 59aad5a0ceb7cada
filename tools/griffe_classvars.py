"""Griffe extension for the API reference: unannotated class attributes are not fields.

``griffe_pydantic``'s static analysis labels every attribute assigned in a model's
body as a pydantic field. Pydantic itself accepts an unannotated assignment only
when it overrides a ``ClassVar`` declared in a base (``summary``, ``call_options``
of the rule specs), so such attributes are relabelled class attributes here. List
this extension after ``griffe_pydantic`` in ``mkdocs.yml``.
"""

from __future__ import annotations

from typing import Any

import griffe


class UnannotatedAreClassVars(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._visit(pkg)

    def _visit(self, obj: griffe.Object) -> None:
        for member in obj.members.values():
            if member.is_alias:
                continue
            if member.is_class or member.is_module:
                self._visit(member)
            elif (
                member.is_attribute
                and "pydantic-field" in member.labels
                and member.annotation is None
            ):
                member.labels.discard("pydantic-field")
                member.labels.add("class-attribute")
