"""A small kustomize renderer for exactly the subset k8s/ uses, so the manifests are tested on
any machine: resources (files and kustomization directories), namespace, images and JSON 6902
patches with targets. Anything else in a kustomization is refused, never silently ignored.
test_manifests.py checks that it renders what `kubectl kustomize` renders wherever kubectl is
installed."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
}


class KustomizeError(ValueError):
    pass


def render(folder: Path) -> list[Obj]:
    """The objects `kubectl kustomize <folder>` would print (order aside)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{folder}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in spec.get("patches", []):
        _patch(folder, objects, patch)
    if "namespace" in spec:
        _namespace(objects, spec["namespace"])
    for image in spec.get("images", []):
        _image(objects, image)
    return objects


def _matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown:
        raise KustomizeError(f"unsupported patch target fields {sorted(unknown)}")
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = (
        ("kind", obj["kind"]),
        ("name", obj["metadata"]["name"]),
        ("group", group),
        ("version", version),
    )
    # Like kustomize, every target field is an anchored regular expression.
    return all(re.fullmatch(target[key], value) for key, value in checks if key in target)


def _patch(folder: Path, objects: list[Obj], patch: Obj) -> None:
    unknown = set(patch) - {"target", "patch", "path"}
    if unknown:
        raise KustomizeError(f"unsupported patch fields {sorted(unknown)}")
    text = patch["patch"] if "patch" in patch else (folder / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise KustomizeError("only JSON 6902 patches (a list of operations) are supported")
    targets = [o for o in objects if _matches(o, patch.get("target", {}))]
    if not targets:
        raise KustomizeError(f"patch target {patch.get('target')} matches nothing")
    for obj in targets:
        for operation in operations:
            apply_operation(obj, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _step(node: Any, key: str) -> Any:
    if isinstance(node, list):
        return node[int(key)]
    return node[key]


def apply_operation(obj: Obj, operation: Obj) -> None:
    """One RFC 6902 operation: add, remove, replace or test."""
    op = operation["op"]
    *parents, last = _pointer(operation["path"])
    node: Any = obj
    try:
        for key in parents:
            node = _step(node, key)
        if op == "test":
            if _step(node, last) != operation["value"]:
                raise KustomizeError(f"test failed at {operation['path']}")
        elif op == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif op == "replace":
            _step(node, last)  # must exist
            node[int(last) if isinstance(node, list) else last] = copy.deepcopy(operation["value"])
        elif op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(node, list):
                node.insert(len(node) if last == "-" else int(last), value)
            else:
                node[last] = value
        else:
            raise KustomizeError(f"unsupported operation {op}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise KustomizeError(f"{op} {operation['path']}: {exc!r}") from None


def _namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace  # kustomize renames the namespace itself
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


def _containers(node: Any) -> list[Obj]:
    found: list[Obj] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(c for c in value if isinstance(c, dict))
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def split_image(image: str) -> tuple[str, str, str]:
    """name, tag, digest."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _image(objects: list[Obj], image: Obj) -> None:
    for obj in objects:
        for container in _containers(obj):
            name, tag, digest = split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
                continue
            tag = image.get("newTag", tag)
            container["image"] = (
                name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )
