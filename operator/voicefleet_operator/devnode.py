"""A real worker node beside the KWOK nodes: containers run, pods get IPs, Services route.

containerd (CRI, runc), kubelet and kube-proxy (iptables mode) run as local processes
from binaries built once from the Go module proxy (hack/kube-binaries.sh,
hack/node-binaries.sh, which also builds runc); the CNI plugins (bridge, host-local,
portmap, loopback) are Debian's; CoreDNS answers cluster names on the node's address. Images
come from hack/images.sh (built from the repository's Dockerfile, no Docker engine)
and are imported into containerd, so nothing is ever pulled.

Network safety: pods live on one Linux bridge inside this machine. The pod, Service
and KWOK pod CIDRs are dropped on every interface but the bridge and loopback, and
pods may not forward to anything but each other and the host. ``down()`` removes every
process, mount, network namespace, veth, the bridge, every iptables chain and rule
the node made, its cgroups and its state directory; ``leftovers()`` lists any that
remain. Needs root. One real node per machine (its bridge, addresses and iptables
chains have fixed names).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .devcluster import KWOK_POD_CIDR, NODE_IP, POD_CIDR, REPO, SERVICE_CIDR, KwokCluster

NODE_NAME = "vf-node"
BRIDGE = "vfbr0"
CLUSTER_DOMAIN = "cluster.local"
# What tests and examples use to put pods on (or keep them off) the real node.
NODE_LABEL = ("voicefleet.io/node", "real")
NODE_TAINT = ("voicefleet.io/real-node", "true", "NoSchedule")
GUARD_CHAIN = "VOICEFLEET-GUARD"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BUILD_BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
CNI_BIN = Path("/usr/lib/cni")
IPTABLES = ("iptables", "ip6tables")
# Chains the node's components create (kube-proxy, kubelet, the portmap plugin) and ours.
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-", GUARD_CHAIN)
KUBELET_PORT = 10250
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOG_LINKS = Path("/var/log/containers")  # kubelet's fixed place for its log symlinks


def pod_placement() -> dict[str, object]:
    """nodeSelector + tolerations that put a pod on the real node."""
    key, value = NODE_LABEL
    tkey, tvalue, effect = NODE_TAINT
    return {
        "nodeSelector": {key: value},
        "tolerations": [{"key": tkey, "operator": "Equal", "value": tvalue, "effect": effect}],
    }


def project_image(images: dict[str, Path]) -> str:
    """The agent pods' image: the repository's Dockerfile, default target."""
    return next(name for name in images if name.split(":")[0].endswith("/voicefleet"))


def operator_image(images: dict[str, Path]) -> str:
    """The operator's image: the repository's Dockerfile, target `operator`."""
    return next(name for name in images if name.split(":")[0].endswith("/voicefleet-operator"))


def knowledge_image(images: dict[str, Path]) -> str:
    """The knowledge servers' image: the repository's Dockerfile, target `knowledge`."""
    return next(name for name in images if name.split(":")[0].endswith("/voicefleet-knowledge"))


def project_images(images: dict[str, Path]) -> set[str]:
    """The images a fleet's first call needs (the agent's and the operator's), which bench.node_fleet
    imports as part of its cold start; the knowledge image is not among them."""
    return {project_image(images), operator_image(images)}


def chart_values(images: dict[str, Path]) -> dict[str, Any]:
    """Helm values that put a whole release on the real node with the locally built images."""
    redis = next(name for name in images if "redis" in name)
    repository, _, tag = project_image(images).rpartition(":")
    operator_repository, _, operator_tag = operator_image(images).rpartition(":")
    knowledge_repository, _, knowledge_tag = knowledge_image(images).rpartition(":")
    placement = pod_placement()
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "operator": {"image": {"repository": operator_repository, "tag": operator_tag}, **placement},
        "knowledge": {"image": {"repository": knowledge_repository, "tag": knowledge_tag}},
        "redis": {"image": redis, **placement},
        "example": {**placement},
    }


def node_bin_dir() -> Path:
    if env := os.environ.get("VOICEFLEET_NODE_BIN"):
        return Path(env)
    out = subprocess.run(
        [str(REPO / "hack" / "node-binaries.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def build_images() -> dict[str, Path]:
    """name -> docker-archive of every image the node needs (hack/images.sh; cached)."""
    out = subprocess.run([str(REPO / "hack" / "images.sh")], check=True, capture_output=True, text=True)
    images: dict[str, Path] = {}
    for line in out.stdout.splitlines():
        name, _, path = line.strip().partition(" ")
        if name and path and name != BUILD_BASE_IMAGE:  # the base is only the Dockerfile's input
            images[name] = Path(path)
    return images


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass
class RealNode:
    cluster: KwokCluster
    workdir: Path
    node_bin: Path = field(default_factory=node_bin_dir)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    saved_sysctls: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- paths
    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "run" / "containerd.sock"

    def log(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    def env(self) -> dict[str, str]:
        path = f"{self.node_bin}{os.pathsep}{self.cluster.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path}

    # ---------------------------------------------------------------- up
    def up(self, images: dict[str, Path] | None = None, timeout: float = 180) -> None:
        """Bring the node up and wait until it is Ready with every image loaded."""
        if os.geteuid() != 0:
            raise RuntimeError("the real node needs root (network namespaces, mounts, iptables)")
        self.down()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._network()
        self._start("containerd", self._containerd_args())
        self._wait(lambda: self.containerd_socket.exists(), 30, "containerd socket")
        for path in (images or {}).values():
            self.ctr("images", "import", "--snapshotter", "overlayfs", str(path), timeout=300)
        self._start("coredns", [str(self.node_bin / "coredns"), "-conf", str(self._corefile())])
        self._start("kubelet", self._kubelet_args())
        self._start("kube-proxy", self._kube_proxy_args())
        self._wait(self.ready, timeout, f"node {NODE_NAME} Ready")

    def ready(self) -> bool:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}; log:\n{self.tail(name)}")
        out = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def tail(self, component: str, chars: int = 4000) -> str:
        path = self.log(component)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.node_bin / "ctr"), "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
        )

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.tail(n, 2000)}" for n in self.processes)
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
            time.sleep(0.5)

    def _start(self, name: str, args: list[str]) -> None:
        log = self.log(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            # Own process group: down() can signal a component and everything it forked.
            self.processes[name] = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )

    # ---------------------------------------------------------------- network
    def _sysctl(self, key: str, value: str) -> None:
        path = Path("/proc/sys") / key.replace(".", "/")
        if not path.exists():
            return
        self.saved_sysctls.setdefault(key, path.read_text().strip())
        path.write_text(value)

    def _network(self) -> None:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Pod -> Service -> pod on the same bridge goes through the host's NAT.
        self._sysctl("net.ipv4.ip_forward", "1")
        self._sysctl("net.bridge.bridge-nf-call-iptables", "1")
        self._sysctl("net.bridge.bridge-nf-call-ip6tables", "1")
        _write(self.workdir / "sysctls.json", json.dumps(self.saved_sysctls))
        self._guard()

    def _guard(self) -> None:
        """Cluster addresses never leave the machine: drop them on every interface but ours.

        The rules sit in mangle POSTROUTING, which every outgoing packet passes after the
        filter table (where kube-proxy prepends its ACCEPT rules) and before source NAT.
        """
        ipt = ("iptables", "-w", "-t", "mangle")
        _run(*ipt, "-N", GUARD_CHAIN)
        _run(*ipt, "-A", GUARD_CHAIN, "-o", BRIDGE, "-j", "RETURN")
        _run(*ipt, "-A", GUARD_CHAIN, "-o", "lo", "-j", "RETURN")
        for cidr in (POD_CIDR, SERVICE_CIDR, KWOK_POD_CIDR):
            for match in ("-d", "-s"):
                _run(*ipt, "-A", GUARD_CHAIN, match, cidr, "-j", "DROP")
        _run(*ipt, "-I", "POSTROUTING", "1", "-j", GUARD_CHAIN)
        # Pods get IPv4 only (no IPv6 route or address on the bridge): nothing to guard on v6.

    def guard_rules(self) -> str:
        return self.iptables("-t", "mangle", "-S", GUARD_CHAIN)

    def iptables(self, *args: str) -> str:
        return _run("iptables", "-w", *args).stdout

    # ---------------------------------------------------------------- configs
    def _containerd_args(self) -> list[str]:
        root, state = self.workdir / "containerd" / "root", self.workdir / "containerd" / "state"
        cni_conf = self._cni_config()
        runc = self.node_bin / "runc"
        config = f"""
version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[debug]
  address = "{self.containerd_socket}.debug"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # This machine withholds CAP_SYS_RESOURCE, so no process may lower its OOM score (kubelet
  # asks -998 for pod sandboxes): keep every container at or above containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{cni_conf.parent}"
"""
        path = _write(self.workdir / "containerd" / "config.toml", config)
        return [str(self.node_bin / "containerd"), "--config", str(path)]

    def _cni_config(self) -> Path:
        conf = {
            "cniVersion": "1.0.0",
            "name": "voicefleet",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # pods never reach beyond the host (see the guard)
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        return _write(self.workdir / "cni" / "net.d" / "10-voicefleet.conflist", json.dumps(conf, indent=1))

    def _corefile(self) -> Path:
        kubeconfig = self.cluster.kubeconfig
        corefile = f"""
{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
    }}
    cache 5
}}
.:53 {{
    bind {NODE_IP}
    errors
    # Pods resolve cluster names only: no query leaves the machine.
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
        return _write(self.workdir / "coredns" / "Corefile", corefile)

    def _kubelet_args(self) -> list[str]:
        kdir = self.workdir / "kubelet"
        resolv = _write(kdir / "resolv.conf", f"nameserver {NODE_IP}\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 0,
            # The API server's kubelet client has no certificate here; the kubelet listens
            # only on the node's bridge address, which never leaves this machine.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this machine mounts cgroup v1 controllers
            "failSwapOn": False,
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podCIDR": POD_CIDR,
            "maxPods": 110,
            "serializeImagePulls": False,
            # Images are imported, never pulled: image GC must not remove them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": False,
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "localStorageCapacityIsolation": False,
            "podLogsDirectory": str(kdir / "pod-logs"),
            "logging": {"format": "text"},
        }
        path = _write(kdir / "config.yaml", yaml.safe_dump(config))
        label = "=".join(NODE_LABEL)
        taint = f"{NODE_TAINT[0]}={NODE_TAINT[1]}:{NODE_TAINT[2]}"
        return [
            str(self.cluster.bin_dir / "kubelet"),
            f"--config={path}",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--root-dir={kdir / 'root'}",
            f"--cert-dir={kdir / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            f"--node-labels={label}",
            f"--register-with-taints={taint}",
            "--v=1",
        ]

    def _kube_proxy_args(self) -> list[str]:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # Every Service hop is masqueraded, so replies always come back through the host.
            "iptables": {"masqueradeAll": True, "syncPeriod": "30s", "minSyncPeriod": "0s"},
            "conntrack": {"maxPerCore": 0, "min": 0},
            "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE, which this machine withholds
        }
        path = _write(self.workdir / "kube-proxy" / "config.yaml", yaml.safe_dump(config))
        return [str(self.cluster.bin_dir / "kube-proxy"), f"--config={path}", "--v=1"]

    # ---------------------------------------------------------------- down
    def down(self) -> None:
        """Remove everything the node made. Safe to call when nothing is up."""
        self._stop("kubelet")
        self._stop("kube-proxy")
        self._stop("coredns")
        self._kill_containers()
        self._stop("containerd")
        self._kill_strays()
        self._unmount_all()
        self._remove_netns()
        with contextlib.suppress(subprocess.CalledProcessError):
            _run("ip", "link", "del", BRIDGE)
        self._remove_iptables()
        self._restore_sysctls()
        self._remove_cgroups()
        for link in self._log_links():
            link.unlink(missing_ok=True)
        if self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.cluster.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false")

    def _stop(self, name: str, timeout: float = 20) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _kill_containers(self) -> None:
        """SIGKILL every process in the pods' cgroups: containers outlive kubelet and containerd."""
        for _ in range(5):
            pids = set(_cgroup_pids()) - {os.getpid()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def _kill_strays(self) -> None:
        """What else runs off the workdir: the shims (containerd detaches them), an earlier run's parts."""
        for pid in _pids_running(str(self.workdir)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _unmount_all(self) -> None:
        for target in sorted(_mounts_under(self.workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)

    def _remove_netns(self) -> None:
        # containerd keeps its pod network namespaces under its state dir (unmounted above).
        for link in _links():
            if link.startswith("veth") and _link_master(link) == BRIDGE:
                subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)

    def _remove_iptables(self) -> None:
        for binary in IPTABLES:
            for table in ("filter", "nat", "mangle", "raw"):
                _delete_owned_chains(binary, table)

    def _restore_sysctls(self) -> None:
        saved_file = self.workdir / "sysctls.json"
        saved = dict(self.saved_sysctls)
        if not saved and saved_file.exists():
            saved = json.loads(saved_file.read_text())
        for key, value in saved.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            with contextlib.suppress(OSError):
                path.write_text(value)
        self.saved_sysctls.clear()

    def _remove_cgroups(self) -> None:
        for controller_dir in _cgroup_dirs():
            for sub in sorted(_subdirs(controller_dir), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                controller_dir.rmdir()

    def _log_links(self) -> list[Path]:
        if not CONTAINER_LOG_LINKS.is_dir():
            return []
        prefix = str(self.workdir)
        return [
            p
            for p in CONTAINER_LOG_LINKS.iterdir()
            if p.is_symlink() and str(p.readlink()).startswith(prefix)
        ]

    # ---------------------------------------------------------------- audit
    def leftovers(self) -> list[str]:
        """Everything of the node still on this machine (empty after a clean ``down()``)."""
        found: list[str] = []
        found += [f"process {pid}" for pid in _pids_running(str(self.workdir))]
        found += [f"cgroup process {pid}" for pid in _cgroup_pids()]
        found += [f"mount {m}" for m in _mounts_under(self.workdir)]
        found += [f"link {name}" for name in _links() if name == BRIDGE or _link_master(name) == BRIDGE]
        for binary in IPTABLES:
            for table in ("filter", "nat", "mangle", "raw"):
                found += [f"{binary} {table} {c}" for c in _owned_chains(binary, table)]
        found += [f"cgroup {d}" for d in _cgroup_dirs()]
        found += [f"log link {p}" for p in self._log_links()]
        if self.workdir.exists():
            found.append(f"dir {self.workdir}")
        return found


# -------------------------------------------------------------------- host probes
def _cgroup_dirs() -> Iterator[Path]:
    """The kubelet's pod cgroups (cgroupfs driver) under every v1 controller and v2."""
    if not CGROUP_ROOT.exists():
        return
    for controller in CGROUP_ROOT.iterdir():
        candidate = controller / "kubepods"
        if candidate.is_dir():
            yield candidate


def _subdirs(root: Path) -> list[Path]:
    """Every directory below ``root``; cgroups the kubelet removes meanwhile are skipped, not errors."""
    return [Path(parent) / name for parent, names, _ in os.walk(root) for name in names]


def _cgroup_pids() -> Iterator[int]:
    for d in _cgroup_dirs():
        for cgroup in [d, *_subdirs(d)]:
            with contextlib.suppress(OSError):
                for line in (cgroup / "cgroup.procs").read_text().split():
                    yield int(line)


def _pids_running(needle: str) -> Iterator[int]:
    """Processes whose command line mentions ``needle`` (the node's workdir)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if needle in cmdline:
                yield int(entry.name)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) if root.exists() else str(root)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == prefix or target.startswith(prefix + "/"):
            found.append(target)
    return found


def _links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=False)
    return [link["ifname"] for link in json.loads(out.stdout or "[]")]


def _link_master(name: str) -> str:
    out = subprocess.run(["ip", "-j", "link", "show", name], capture_output=True, text=True, check=False)
    info = json.loads(out.stdout or "[]")
    return str(info[0].get("master", "")) if info else ""


def _owned_chains(binary: str, table: str) -> list[str]:
    out = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
    chains = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith(OWNED_CHAIN_PREFIXES):
            chains.append(parts[1])
    return chains


def _delete_owned_chains(binary: str, table: str) -> None:
    chains = _owned_chains(binary, table)
    if not chains:
        return
    out = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
    # First every rule in a built-in chain that jumps to one of ours, then our chains.
    for line in out.stdout.splitlines():
        parts = shlex.split(line)
        builtin = parts[:1] == ["-A"] and not parts[1].startswith(OWNED_CHAIN_PREFIXES)
        if builtin and any(p.startswith(OWNED_CHAIN_PREFIXES) for p in parts[2:]):
            subprocess.run([binary, "-w", "-t", table, "-D", *parts[1:]], capture_output=True, check=False)
    for chain in chains:
        subprocess.run([binary, "-w", "-t", table, "-F", chain], capture_output=True, check=False)
    for chain in chains:
        subprocess.run([binary, "-w", "-t", table, "-X", chain], capture_output=True, check=False)
