"""A small kustomize renderer for exactly the subset k8s/ uses, so the manifests are tested on
any machine: resources (files and kustomization directories), components (patches only),
namespace, images, and patches with targets: JSON 6902 and strategic merge (for the lists
k8s/ patches). Anything else in a kustomization is refused, never silently ignored.
test_manifests.py checks that it renders what `kubectl kustomize` renders wherever kubectl is
installed."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "images", "patches"}
COMPONENT_SUPPORTED = {"apiVersion", "kind", "patches"}
# How a strategic merge patch merges the lists it holds, by their path (list items skipped): by a
# merge key (the Kubernetes schema's patchMergeKey) or replaced whole (x-kubernetes-list-type:
# atomic). A list anywhere else in a patch is refused.
MERGE_KEYS = {("spec", "template", "spec", "volumes"): "name"}
ATOMIC_LISTS = {("spec", "metrics")}
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
    spec = _load(folder, "Kustomization", SUPPORTED)
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    # Like kustomize: a component's patches see the resources above, before this folder's own.
    for entry in spec.get("components", []):
        component = (folder / entry).resolve()
        for patch in _load(component, "Component", COMPONENT_SUPPORTED).get("patches", []):
            _patch(component, objects, patch)
    for patch in spec.get("patches", []):
        _patch(folder, objects, patch)
    if "namespace" in spec:
        _namespace(objects, spec["namespace"])
    for image in spec.get("images", []):
        _image(objects, image)
    return objects


def _load(folder: Path, kind: str, supported: set[str]) -> Obj:
    spec: Obj = yaml.safe_load((folder / "kustomization.yaml").read_text())
    if spec.get("kind", "Kustomization") != kind:
        raise KustomizeError(f"{folder}: a {spec.get('kind')} where a {kind} was expected")
    unknown = set(spec) - supported
    if unknown:
        raise KustomizeError(f"{folder}: unsupported {kind} fields {sorted(unknown)}")
    return spec


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
    body = yaml.safe_load(text)
    if isinstance(body, dict):
        # A strategic merge patch without a target patches the object it names.
        target = patch.get("target", {"kind": body["kind"], "name": body["metadata"]["name"]})
    elif isinstance(body, list):
        target = patch.get("target", {})
    else:
        raise KustomizeError(f"{folder}: a patch is a list of operations or an object")
    targets = [o for o in objects if _matches(o, target)]
    if not targets:
        raise KustomizeError(f"patch target {target} matches nothing")
    for obj in targets:
        if isinstance(body, dict):
            merge_patch(obj, body)
        else:
            for operation in body:
                apply_operation(obj, operation)


def merge_patch(obj: Obj, patch: Obj) -> None:
    """A strategic merge patch, as kustomize applies it to each target: the patch's own kind and
    name do not matter; maps merge, null deletes, and a keyed list takes the patch's items first
    (each merged with the object's item of the same key), then the object's other items."""
    body = copy.deepcopy(patch)
    body["apiVersion"], body["kind"] = obj["apiVersion"], obj["kind"]
    body["metadata"] = {**body.get("metadata", {}), "name": obj["metadata"]["name"]}
    merged = _merge(obj, body, ())
    obj.clear()
    obj.update(merged)


def _merge(into: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if isinstance(patch, dict):
        result = dict(into) if isinstance(into, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                raise KustomizeError(f"unsupported patch directive {key} at {path}")
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _merge(result.get(key), value, (*path, key))
        return result
    if isinstance(patch, list):
        if path in ATOMIC_LISTS:
            return copy.deepcopy(patch)
        if path not in MERGE_KEYS:
            raise KustomizeError(f"no merge rule for the list at {'.'.join(path)}")
        key = MERGE_KEYS[path]
        existing = {item[key]: item for item in into or []}
        merged = [_merge(existing.get(item[key]), item, path) for item in patch]
        patched = {item[key] for item in patch}
        return merged + [copy.deepcopy(item) for item in into or [] if item[key] not in patched]
    return copy.deepcopy(patch)


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
