"""A griffe extension for the docs build: numpydoc's Sphinx roles as links.

The docstrings are numpydoc, read by ``help()`` and IDEs as well as by the docs,
so they keep numpydoc's roles (``:class:`~sktransfer.DiskCache```). mkdocstrings
does not render roles; this extension rewrites each one, when the API reference
is built, into a mkdocstrings cross-reference (``[DiskCache][sktransfer.DiskCache]``)
when it names a public object (resolved in the docstring's own scope, so
``:meth:`transform``` inside a class works), and into plain code otherwise (a
private module, another project's object). ``mkdocs build --strict`` then fails
on any link that points to nothing.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _public(path: str) -> bool:
    parts = path.split(".")
    return parts[0] == "sktransfer" and not any(p.startswith("_") for p in parts)


def _target(obj: griffe.Object, name: str) -> str | None:
    """The public path that ``name`` names from ``obj``'s scope, if any."""
    if name.startswith("sktransfer."):
        return _public_alias(obj, name)
    scope = obj if isinstance(obj, griffe.Class) else obj.parent
    try:
        resolved = scope.resolve(name.split(".")[0]) if scope else None
    except griffe.NameResolutionError:
        resolved = None
    if resolved is None:
        # a method or attribute of the class that holds the docstring
        owner = obj if isinstance(obj, griffe.Class) else obj.parent
        while owner is not None and not isinstance(owner, griffe.Class):
            owner = owner.parent
        if owner is not None and name.split(".")[0] in owner.all_members:
            resolved = owner.path
            return _public_alias(obj, f"{resolved}.{name}")
        return None
    full = ".".join([resolved, *name.split(".")[1:]])
    return _public_alias(obj, full)


def _public_alias(obj: griffe.Object, path: str) -> str | None:
    """``sktransfer._extractor.PretrainedFeatureExtractor.transform`` is rendered
    under a public name (``sktransfer.PretrainedFeatureExtractor.transform``):
    drop the private module segments, keeping the first name that exists."""
    if _public(path):
        return path
    parts = path.split(".")
    private = [i for i, p in enumerate(parts) if p.startswith("_")]
    if not private:
        return None
    tail = parts[private[-1] + 1 :]
    head = [p for p in parts[: private[0]]]
    for cut in range(len(head), 0, -1):  # longest public package first
        candidate = ".".join(head[:cut] + tail)
        if _public(candidate) and _exists(obj.package, candidate):
            return candidate
    return None


def _exists(package: griffe.Module, path: str) -> bool:
    try:
        package[path.split(".", 1)[1]]
    except (KeyError, griffe.AliasResolutionError, IndexError):
        return False
    return True


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._walk(pkg, seen=set())

    def _walk(self, obj: griffe.Object, seen: set) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(
                lambda m: self._replace(obj, m), obj.docstring.value
            )
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)

    @staticmethod
    def _replace(obj: griffe.Object, match: re.Match) -> str:
        short, name = match.group(1) == "~", match.group(2)
        text = name.rsplit(".", 1)[-1] if short else name
        target = _target(obj, name)
        return f"[`{text}`][{target}]" if target else f"`{text}`"
