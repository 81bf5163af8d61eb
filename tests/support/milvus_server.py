"""A real Milvus 2.3.5 standalone for tests and benchmarks, from the PyPI wheel `milvus==2.3.5`.

`milvus-server` (the wheel's launcher) picks its ports by probing upward from fixed defaults
(19530, 9091, and embedded etcd always on 2379/2380), which collides with other Milvus processes
on the same machine. So this module renders the wheel's config template itself, with every port
chosen free by the kernel and embedded etcd bound to 127.0.0.1 through an etcd config file, and
runs the `milvus` binary directly in its own process group. Milvus 2.3 binds its gRPC and metrics
ports on all interfaces (no option changes that); the ports are random and the process lives only
as long as the test session.

The child ignores SIGTERM: `stop()` kills the whole process group.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT_TOKEN = "root:Milvus"  # the default credential of a Milvus server with authorization on
_PORT_KEYS = (
    "etcd_port",
    "root_coord_port",
    "proxy_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
_NODE_SECTIONS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")


def unavailable_reason() -> str | None:
    """Why the wheel cannot run here, or None when it can."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the milvus==2.3.5 wheel runs on Linux x86_64 only (this is {sys.platform}/{platform.machine()})"
    try:
        import milvus  # noqa: F401
    except ImportError:
        return "the milvus==2.3.5 wheel is not installed (pip install --no-deps milvus==2.3.5)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distinct_free_ports(n: int) -> list[int]:
    """`n` different free ports (the kernel may hand out a port again once it is closed)."""
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


@dataclass
class MilvusStandalone:
    """One Milvus standalone process with its data under `base_dir`; restartable on the same ports."""

    base_dir: Path
    auth: bool = True
    ports: dict[str, int] = field(default_factory=dict)
    metrics_port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy_port']}"

    @property
    def token(self) -> str:
        return ROOT_TOKEN if self.auth else ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _configure(self) -> None:
        from milvus import MilvusServerConfig, _initialize_data_files  # type: ignore[import-not-found]

        ports = distinct_free_ports(len(_PORT_KEYS) + 2)
        self.ports = dict(zip(_PORT_KEYS, ports, strict=False))
        self.metrics_port, self.ports["etcd_peer_port"] = ports[-2:]
        config = MilvusServerConfig(data_dir=str(self.base_dir))
        config.update(**{k: v for k, v in self.ports.items() if k in _PORT_KEYS})
        config.set("authorization_enabled", self.auth)
        for section in _NODE_SECTIONS:
            config.set(f"{section}.ip", "127.0.0.1")
        config.resolve()  # writes configs/milvus.yaml
        etcd_conf = self.base_dir / "configs" / "etcd.yaml"
        client, peer = self.ports["etcd_port"], self.ports["etcd_peer_port"]
        etcd_conf.write_text(
            f"name: default\ndata-dir: {self.base_dir / 'data' / 'etcd.data'}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\nadvertise-client-urls: http://127.0.0.1:{client}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
        )
        milvus_yaml = self.base_dir / "configs" / "milvus.yaml"
        text, n = re.subn(
            r"(\n  use:\n    embed: true[^\n]*\n)",
            lambda m: f"{m.group(1)}  config:\n    path: {etcd_conf}\n",
            milvus_yaml.read_text(),
        )
        if n != 1:
            raise RuntimeError("unexpected milvus.yaml template: cannot point embedded etcd at 127.0.0.1")
        milvus_yaml.write_text(text)
        _initialize_data_files(str(self.base_dir))  # unpacks the binaries once (~12 s), then checks md5s

    def start(self, timeout: float = 90.0) -> None:
        if self._proc is not None:
            return
        if self.ports:  # a restart reuses the config: the ports may sit in TIME_WAIT for the probe
            self._launch(timeout)
            return
        # A fresh server: a port found free may be taken by someone else before Milvus binds it
        # (seen once in CI). Then start over on new ports, with no data left from the failed try.
        for attempt in range(3):
            try:
                self._configure()  # milvus checks here that it can bind each port
                self._launch(timeout)
                return
            except (RuntimeError, TimeoutError):
                if attempt == 2:
                    raise
                shutil.rmtree(self.base_dir / "data", ignore_errors=True)

    def _launch(self, timeout: float) -> None:
        env = os.environ | {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),
            "MILVUS_RUN_DIR": str(self.base_dir / "run"),
            "LD_LIBRARY_PATH": str(self.base_dir / "bin"),
        }
        log = open(self.base_dir / "logs" / "milvus-stdout.log", "ab")  # noqa: SIM115 (owned by the child)
        self._proc = subprocess.Popen(
            [str(self.base_dir / "bin" / "milvus"), "run", "standalone"],
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
        log.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"Milvus exited during start-up; see {self.base_dir / 'logs'}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if b"OK" in resp.read():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Milvus was not healthy within {timeout:.0f} s; see {self.base_dir / 'logs'}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server started in its own process group, with everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
