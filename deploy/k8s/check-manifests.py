#!/usr/bin/env python3
"""Check lepton's Kubernetes manifests against the image they run (scripts/check-deploy.sh calls it).

Each variant is a directory of plain manifests that `kubectl apply -f DIR/` applies as they are:
every `*.yaml`, `*.yml` and `*.json` file directly in DIR (as kubectl reads it, not recursively),
plus an optional `Kustomization` for `kubectl apply -k DIR`.

kubernetes-validate checks each resource against the API schema; this checks what a schema
cannot: that the Deployment runs as the image's user with its volumes owned through fsGroup,
that the caches and state are on volumes, that probes, Services, the PodDisruptionBudget and the
autoscaler point at ports and objects that exist, that `lepton serve` listens where its probes
look, and that tauon's ConfigMap is mounted where tauon reads it with its status file and apps'
state elsewhere. Across variants, the parts of their Deployments that do not say what runs (pod
and container security, resources, volumes, rollout), their PodDisruptionBudgets and autoscalers
must be the same: a change to one must be made to all. A `Kustomization` must list exactly the
manifests beside it and nothing else (no bases, patches or generators), and there must be no
`kustomization.yaml`, which `kubectl apply -f DIR/` would try to apply.

Usage: check-manifests.py IMAGE_CONFIG.json VARIANT_DIR...    (needs PyYAML)
       check-manifests.py --same VARIANT_DIR RENDERED.yaml
The second form checks that RENDERED.yaml (`kubectl kustomize VARIANT_DIR`) holds the same
objects as the plain manifests. Each problem is printed as `<file>: <kind>/<name>: <what>`; the
exit status is 1 if any.
"""

import json
import os
import posixpath
import sys

import yaml


class Checker:
    def __init__(self, image_config):
        cfg = image_config.get("config", {})
        uid, _, gid = cfg.get("User", "").partition(":")
        self.uid = int(uid) if uid.isdigit() else None
        self.gid = int(gid) if gid.isdigit() else self.uid
        self.volumes = sorted(cfg.get("Volumes", {}))
        self.env = dict(e.split("=", 1) for e in cfg.get("Env", []))
        self.entrypoint = cfg.get("Entrypoint") or []
        self.cmd = cfg.get("Cmd") or []
        self.problems = []
        self.source = {}  # id(object) -> its file

    def problem(self, where, message):
        self.problems.append(f"{where}: {message}")

    def check_variant(self, directory):
        """Check the manifests in DIRECTORY; return its objects by kind, or None."""
        docs = load_variant(directory, self)
        if docs is None:
            return None
        self.check_kustomization(directory)
        by_kind = {}
        seen = set()
        for path, doc in docs:
            key = (doc["kind"], doc["metadata"]["name"])
            if key in seen:
                self.problem(f"{path}: {key[0]}/{key[1]}", "defined twice in the variant")
            seen.add(key)
            by_kind.setdefault(doc["kind"], []).append(doc)
        self.source.update((id(doc), path) for path, doc in docs)
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            count = len(by_kind.get(kind, []))
            if count == 0 or (count > 1 and kind != "Service"):
                self.problem(directory, f"expected {'a' if kind == 'Service' else 'one'} {kind}, found {count}")
        deployments = by_kind.get("Deployment", [])
        if len(deployments) != 1:
            return None
        deployment = deployments[0]
        path = self.source[id(deployment)]
        where = f"{path}: Deployment/{deployment['metadata']['name']}"
        pod = deployment["spec"]["template"]
        containers = pod["spec"]["containers"]
        lepton = next((c for c in containers if is_lepton_image(c.get("image", ""))), None)
        if lepton is None:
            self.problem(where, "no container runs the lepton image")
            return None
        self.check_pod(where, pod["spec"], lepton)
        ports = {p["name"]: p["containerPort"] for p in lepton.get("ports", []) if "name" in p}
        labels = pod["metadata"].get("labels", {})
        self.check_selectors(by_kind, deployment, labels, ports)
        # What the container runs, as Kubernetes decides it: `command` replaces the image's
        # entrypoint and drops its default arguments, `args` replaces those arguments.
        if lepton.get("command"):
            command, args = lepton["command"], lepton.get("args") or []
        else:
            command, args = self.entrypoint, lepton.get("args", self.cmd)
        binary = posixpath.basename(command[0]) if command else ""
        if binary == "lepton" and args[:1] == ["serve"]:
            self.check_serve(where, lepton, args, ports)
        elif binary == "tauon":
            self.check_tauon(where, pod["spec"], lepton, args, ports, by_kind)
        else:
            self.problem(where, f"runs {command} {args}: neither `lepton serve` nor `tauon`")
        return by_kind

    def check_kustomization(self, directory):
        for name in ("kustomization.yaml", "kustomization.yml"):
            if os.path.exists(os.path.join(directory, name)):
                self.problem(os.path.join(directory, name), "`kubectl apply -f` would apply it as a "
                             "resource and fail: name it `Kustomization`")
        path = os.path.join(directory, "Kustomization")
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            kustomization = yaml.safe_load(f) or {}
        extra = sorted(set(kustomization) - {"apiVersion", "kind", "resources"})
        if extra:
            self.problem(path, f"{', '.join(extra)}: `kubectl apply -f` would not apply the same; "
                               "keep the manifests plain, list them under resources only")
        listed = kustomization.get("resources") or []
        files = manifest_files(directory)
        for name in sorted(set(listed) - set(files)):
            self.problem(path, f"lists {name}, not a manifest in {directory}")
        for name in sorted(set(files) - set(listed)):
            self.problem(path, f"does not list {name}: `kubectl apply -k` would leave it out")
        if len(listed) != len(set(listed)):
            self.problem(path, "lists a manifest twice")

    def check_pod(self, where, spec, container):
        sc = spec.get("securityContext", {})
        csc = container.get("securityContext", {})
        user = csc.get("runAsUser", sc.get("runAsUser"))
        if not (csc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
            self.problem(where, "runAsNonRoot is not set")
        if self.uid is None or self.uid == 0:
            self.problem(where, "the image's USER is not a numeric non-root uid")
        elif user is not None and user != self.uid:
            self.problem(where, f"runAsUser {user} is not the image's user {self.uid}")
        if sc.get("fsGroup") != self.gid:
            self.problem(where, f"fsGroup {sc.get('fsGroup')} is not the image's group {self.gid}: "
                                "volumes would not be writable by lepton")
        if not csc.get("readOnlyRootFilesystem"):
            self.problem(where, "the root filesystem is writable")
        if csc.get("allowPrivilegeEscalation", True):
            self.problem(where, "allowPrivilegeEscalation is not false")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        for path in self.volumes + ["/tmp"]:
            mount = mounts.get(path)
            if mount is None:
                self.problem(where, f"{path} (an image volume) is not on a volume")
            elif mount["name"] not in volumes:
                self.problem(where, f"{path} mounts an undeclared volume {mount['name']}")
            elif mount.get("readOnly"):
                self.problem(where, f"{path} is mounted read-only")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        cache = env.get("LEPTON_CACHE_DIR", self.env.get("LEPTON_CACHE_DIR"))
        if cache not in mounts:
            self.problem(where, f"the cache dir {cache} is not a volume mount")
        self.writable = [p for p, m in mounts.items() if not m.get("readOnly")]
        self.mounts = mounts
        self.volumes_by_name = volumes
        if "cpu" not in container.get("resources", {}).get("requests", {}):
            self.problem(where, "no CPU request: the autoscaler's utilisation has no base")

    def check_serve(self, where, container, args, ports):
        admin = flag(args, "--admin")
        if admin is None or not admin.startswith("0.0.0.0:"):
            self.problem(where, f"--admin {admin}: probes reach the pod's address, bind 0.0.0.0")
            return
        admin_port = int(admin.rsplit(":", 1)[1])
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container.get(probe, {}).get("httpGet")
            if not get or get.get("path") != path:
                self.problem(where, f"{probe} is not GET {path}")
                continue
            port = ports.get(get["port"], get["port"])
            if port != admin_port:
                self.problem(where, f"{probe} probes port {get['port']}, the admin API is on {admin_port}")
        for http in flag_all(args, "--http"):
            if int(http.rsplit(":", 1)[1]) not in ports.values():
                self.problem(where, f"--http {http} is not a container port")
        env = {e["name"] for e in container.get("env", [])}
        if "LEPTON_ADMIN_TOKEN" not in env and flag(args, "--admin-token-file") is None:
            self.problem(where, "no admin token: lepton serve refuses to start")
        if "LEPTON_DB" not in env and flag(args, "--db") is None:
            self.problem(where, "no --db: each node would keep its own SQLite desired state")
        state_root = flag(args, "--state-root")
        if state_root is None or not self.on_writable_volume(state_root):
            self.problem(where, f"--state-root {state_root} is not on a writable volume")

    def check_tauon(self, where, spec, container, args, ports, by_kind):
        if not args or args[0].startswith("-"):
            self.problem(where, "tauon is not given its directory")
            return
        directory = args[0]
        mount = self.mounts.get(directory)
        volume = self.volumes_by_name.get(mount["name"]) if mount else None
        if volume is None or "configMap" not in volume:
            self.problem(where, f"{directory} is not a ConfigMap volume (mounted whole)")
            return
        status = flag(args, "--status-file")
        if status is None or not self.on_writable_volume(status):
            self.problem(where, f"--status-file {status}: the ConfigMap volume is read-only, "
                                "put the status on a writable volume")
        name = volume["configMap"]["name"]
        cms = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] == name]
        if not cms:
            self.problem(where, f"ConfigMap {name} is not in the manifests")
            return
        apps = {k: v for k, v in cms[0].get("data", {}).items() if k.endswith(".json") and not k.startswith(".")}
        if not apps:
            self.problem(where, f"ConfigMap {name} holds no app file")
        for key, text in apps.items():
            at = f"{self.where(cms[0])}: {key}"
            try:
                app = json.loads(text)
            except ValueError as e:
                self.problem(at, f"not JSON: {e}")
                continue
            state_dir = app.get("state_dir", "")
            if not state_dir.startswith("/") or not self.on_writable_volume(state_dir):
                self.problem(at, f"state_dir {state_dir!r} must be absolute, on a writable volume")
            address = app.get("address", "")
            if not address.startswith("0.0.0.0:"):
                self.problem(at, f"address {address!r}: bind 0.0.0.0 to be reached through the Service")
            elif int(address.rsplit(":", 1)[1]) not in ports.values():
                self.problem(at, f"address {address} is not a container port")

    def on_writable_volume(self, path):
        return any(path == m or path.startswith(m.rstrip("/") + "/") for m in self.writable)

    def where(self, doc):
        return f"{self.source[id(doc)]}: {doc['kind']}/{doc['metadata']['name']}"

    def check_selectors(self, by_kind, deployment, labels, ports):
        def selects(selector):
            return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

        if not selects(deployment["spec"]["selector"].get("matchLabels")):
            self.problem(self.where(deployment), "the Deployment's selector does not match its pods")
        for svc in by_kind.get("Service", []):
            at = self.where(svc)
            if not selects(svc["spec"].get("selector")):
                self.problem(at, "selects no lepton pod")
            for port in svc["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                if target not in ports and target not in ports.values():
                    self.problem(at, f"targetPort {target} is not a container port")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            if not selects(pdb["spec"]["selector"].get("matchLabels")):
                self.problem(self.where(pdb), "selects no pod")
        for hpa in by_kind.get("HorizontalPodAutoscaler", []):
            ref = hpa["spec"]["scaleTargetRef"]
            if (ref["kind"], ref["name"]) != ("Deployment", deployment["metadata"]["name"]):
                self.problem(self.where(hpa), f"scales {ref['kind']}/{ref['name']}, not the Deployment")


    def check_shared(self, variants):
        """The parts every variant shares must be the same in all (they had one base)."""
        (first, first_kinds), *others = variants
        for directory, by_kind in others:
            for kind in SHARED_KINDS:
                if len(first_kinds.get(kind, [])) != 1 or len(by_kind.get(kind, [])) != 1:
                    continue  # reported by check_variant
                a, b = first_kinds[kind][0], by_kind[kind][0]
                for path, x, y in differences(shared_part(a), shared_part(b), ""):
                    self.problem(f"{self.where(b)}: {path}",
                                 f"{y!r} here, {x!r} in {self.source[id(a)]}: the variants share "
                                 "it, make it the same in every variant")


# The kinds every variant has, and what each variant's Deployment may set its own way: what its
# container runs. Named items (env, volumeMounts, volumes) one variant has and another has not are
# its own too; those both have must be the same.
SHARED_KINDS = ("Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler")
OWN_CONTAINER_FIELDS = {"command", "args", "ports", "readinessProbe", "livenessProbe", "startupProbe"}


def shared_part(doc):
    if doc["kind"] != "Deployment":
        return doc
    doc = json.loads(json.dumps(doc))
    for container in doc["spec"]["template"]["spec"].get("containers", []):
        for field in OWN_CONTAINER_FIELDS:
            container.pop(field, None)
    return doc


def differences(a, b, path):
    """(path, a's value, b's value) for each difference; named list items only one side has are
    not differences."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list) and all(
            isinstance(i, dict) and "name" in i for i in a + b):
        by_name = {i["name"]: i for i in b}
        for item in a:
            if item["name"] in by_name:
                yield from differences(item, by_name[item["name"]], f"{path}[{item['name']}]")
    elif a != b:
        yield path, a, b


def manifest_files(directory):
    """The files `kubectl apply -f DIRECTORY/` reads, by name."""
    return sorted(name for name in os.listdir(directory)
                  if os.path.splitext(name)[1] in (".yaml", ".yml", ".json")
                  and os.path.isfile(os.path.join(directory, name)))


def load_variant(directory, checker):
    """[(file, object)] of DIRECTORY's manifests, or None (with a problem) if it is not a variant."""
    if not os.path.isdir(directory):
        checker.problem(directory, "not a directory of manifests")
        return None
    docs = []
    for name in manifest_files(directory):
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                if not isinstance(doc, dict) or not all(doc.get(k) for k in ("apiVersion", "kind")) \
                        or not doc.get("metadata", {}).get("name"):
                    checker.problem(path, "a document that is not a named Kubernetes object")
                    continue
                docs.append((path, doc))
    if not docs:
        checker.problem(directory, "no manifests")
        return None
    return docs


def is_lepton_image(image):
    name = image.split("@", 1)[0]
    repository, _, tag = name.rpartition(":")
    if repository and "/" not in tag:
        name = repository
    return name.rsplit("/", 1)[-1] == "lepton"


def same(directory, rendered):
    """Problems if RENDERED (`kubectl kustomize DIRECTORY`) differs from DIRECTORY's manifests."""
    checker = Checker({})
    docs = load_variant(directory, checker) or []
    with open(rendered, encoding="utf-8") as f:
        others = [d for d in yaml.safe_load_all(f) if d]

    def key(doc):
        return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]

    plain = {key(doc): doc for _, doc in docs}
    built = {key(doc): doc for doc in others}
    for k in sorted(set(plain) | set(built)):
        if k not in built:
            checker.problem(rendered, f"{k[0]}/{k[2]}: missing from the kustomize build")
        elif k not in plain:
            checker.problem(rendered, f"{k[0]}/{k[2]}: not in {directory}'s manifests")
        elif plain[k] != built[k]:
            checker.problem(rendered, f"{k[0]}/{k[2]}: differs from {directory}'s manifests")
    return checker.problems


def flag(args, name):
    values = flag_all(args, name)
    return values[-1] if values else None


def flag_all(args, name):
    found = []
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith(name + "="):
            found.append(arg.split("=", 1)[1])
    return found


def main(argv):
    if len(argv) == 4 and argv[1] == "--same":
        problems = same(argv[2], argv[3])
    elif len(argv) >= 3 and not argv[1].startswith("-"):
        with open(argv[1], encoding="utf-8") as f:
            checker = Checker(json.load(f))
        variants = []
        for directory in argv[2:]:
            by_kind = checker.check_variant(directory.rstrip("/") or directory)
            if by_kind is not None:
                variants.append((directory, by_kind))
        if len(variants) > 1:
            checker.check_shared(variants)
        problems = checker.problems
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
