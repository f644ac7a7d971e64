"""The pod manifest as `podman kube play` runs it here (README "Deploy", testing the pod).

    play.py MAIN_PORT ADMIN_PORT METRICS_PORT CONFIGMAP_OUT < k8s/{configmap,volume,deployment}.yaml > POD_OUT

(`podman kube play --configmap CONFIGMAP_OUT POD_OUT`: podman reads envFrom's ConfigMap from
its own file.)

The one documented transformation of the shipped files, nothing else changed (tests/deploy.sh
also points `image:` at the tag it built, localhost/chatsdk-auth:VERSION):
- the `centrifugo` container is left out (its image cannot be pulled here);
- the listen addresses in the ConfigMap move to 127.0.0.1 and free ports, because the test
  plays the pod on the host's network and must stay on loopback and off fixed ports;
- the container ports go (on the host's network podman maps none) and the probes name the
  new main port by number instead of as `http`;
- the init container is of podman's type `always` (run at every start of the pod, as Kubernetes
  runs it at every pod start), an annotation podman reads on the Deployment: with its default,
  `once`, podman 4.3 removes the container as soon as it exits and sometimes finds it still
  running, failing the pod.
"""

import sys

import yaml

main_port, admin_port, metrics_port = (int(a) for a in sys.argv[1:4])
configmap_out = sys.argv[4]
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for doc in docs:
    if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "chatsdk-auth-env":
        data = doc["data"]
        data["CHATSDK_AUTH_SERVER__LISTEN"] = f"127.0.0.1:{main_port}"
        data["CHATSDK_AUTH_ADMIN__LISTEN"] = f"127.0.0.1:{admin_port}"
        data["CHATSDK_AUTH_METRICS__LISTEN"] = f"127.0.0.1:{metrics_port}"
    if doc["kind"] == "Deployment":
        doc["metadata"].setdefault("annotations", {})["io.podman.annotations.init.container.type"] = "always"
        spec = doc["spec"]["template"]["spec"]
        spec["containers"] = [c for c in spec["containers"] if c["name"] != "centrifugo"]
        for c in spec["containers"]:
            c.pop("ports", None)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c:
                    assert c[probe]["httpGet"]["port"] == "http", c[probe]
                    c[probe]["httpGet"]["port"] = main_port
with open(configmap_out, "w") as f:
    yaml.safe_dump_all([d for d in docs if d["kind"] == "ConfigMap"], f, sort_keys=False)
yaml.safe_dump_all([d for d in docs if d["kind"] != "ConfigMap"], sys.stdout, sort_keys=False)
