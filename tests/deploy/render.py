"""Renders a kustomize overlay of centrifugo/deploy/k8s as `kubectl kustomize` would, for the
features the overlays use: `resources` (files and directories with their own
kustomization.yaml, recursively), `patches` whose file is a list of RFC 6902 operations (on
`target` by kind and name, applied with the `jsonpatch` package) or a `$patch: delete`
document. Anything else in a kustomization is refused, so the rendering cannot silently
differ from kustomize's.

    render.py DIR > rendered.yaml
"""

import os
import sys

import jsonpatch
import yaml

KNOWN = {"apiVersion", "kind", "resources", "patches", "images"}


def render(d):
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    unknown = set(k) - KNOWN
    if unknown:
        sys.exit(f"{d}: kustomization fields this renderer does not know: {sorted(unknown)}")
    docs = []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(d, r))
        if os.path.isdir(p):
            docs += render(p)
        else:
            docs += [x for x in yaml.safe_load_all(open(p)) if x]
    for patch in k.get("patches", []):
        body = yaml.safe_load(open(os.path.join(d, patch["path"])))
        if isinstance(body, dict) and body.get("$patch") == "delete":
            key = (body["kind"], body["metadata"]["name"])
            before = len(docs)
            docs = [x for x in docs if (x["kind"], x["metadata"]["name"]) != key]
            assert len(docs) == before - 1, f"{patch['path']}: nothing to delete"
            continue
        t = patch["target"]
        hits = [i for i, x in enumerate(docs) if x["kind"] == t["kind"] and x["metadata"]["name"] == t["name"]]
        assert len(hits) == 1, f"{patch['path']}: target {t} matches {len(hits)} resources"
        docs[hits[0]] = jsonpatch.apply_patch(docs[hits[0]], body)
    for img in k.get("images", []):
        for x in docs:
            spec = x.get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                if c["image"].split(":")[0] == img["name"]:
                    c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    return docs


yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=False)
