"""A throwaway Redis Cluster of three masters on free loopback ports."""

from __future__ import annotations

import shutil
import subprocess

from tests.redis_server import RedisServer, free_port


class RedisCluster:
    def __init__(self, masters: int = 3) -> None:
        if shutil.which("redis-cli") is None:
            raise FileNotFoundError("redis-cli is not installed (Debian/Ubuntu: apt-get install redis-server)")
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(masters):
                port = free_port(below=55536)
                self.nodes.append(
                    RedisServer(
                        "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                        "--cluster-node-timeout", "2000", port=port,
                    )
                )  # fmt: skip
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait_ok()
        except BaseException:
            self.close()
            raise

    def _wait_ok(self) -> None:
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["redis-cli", "-p", str(self.nodes[0].port), "cluster", "info"], capture_output=True, text=True
            ).stdout
            if "cluster_state:ok" in out:
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster did not reach cluster_state:ok within 30 s")

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def close(self) -> None:
        for node in self.nodes:
            node.close()
