#!/usr/bin/env python3
"""Jaeger, the trace backend of the local stack, built once from the Go module proxy.

    jaegerctl.py build     build the binary into the user cache (once; minutes, needs Go 1.24.6+)
    jaegerctl.py start [--name NAME] [--ui-port P] [--query-grpc-port P] [--otlp-http-port P] [--otlp-grpc-port P]
    jaegerctl.py stop  [--name NAME]
    jaegerctl.py status [--name NAME]
    jaegerctl.py reset [--name NAME]   stop and remove the instance's files

Jaeger v2 is an OpenTelemetry collector: one process receives OTLP (gRPC and HTTP), keeps traces
in memory and serves the query API (`/api/services`, `/api/traces?service=...`) and a UI. Its own
defaults listen on more ports than we need, so every instance runs from a configuration written
here that binds each listener to 127.0.0.1 and nothing else. The module proxy's Jaeger carries no
UI assets (they are a separate JavaScript build), so the configuration points Jaeger's static-assets
option at deploy/trace-viewer/, the repository's own small viewer over the same query API. `make run` supervises it beside the
services (deploy/stack.py); `start` runs one on its own (the tests give it free ports and a name).
Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import (  # noqa: E402
    CACHE, VAR, StepFailed, main_guard, port_open, read_pid, run, say, spawn_detached, stack, terminate,
    wait_until,
)

MODULE = "github.com/jaegertracing/jaeger"
# jaeger v1.76.0's go.mod says `go 1.24.6`; an older toolchain refuses the module (GOTOOLCHAIN=local
# keeps Go from downloading a newer one, which only the module proxy is allowed to serve here).
MINIMUM_GO = (1, 24, 6)
# Served by Jaeger itself as its UI (`ui.assets_path`): index.html at `/` and any path it does not
# know, the files under static/ at `/static/`. Read from the repository, so no rebuild of Jaeger.
VIEWER = Path(__file__).resolve().parent / "trace-viewer"


def version() -> str:
    return stack()["jaeger"]["version"]


def build_root() -> Path:
    return CACHE / f"jaeger-{version()}"


def binary() -> Path:
    return build_root() / "jaeger"


def find_go() -> str:
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).exists()),
                                    None)
    if go is None:
        raise StepFailed("Go is not installed; the trace backend (Jaeger) is built with it. Install Go "
                         f"{'.'.join(map(str, MINIMUM_GO))} or newer (Debian 12's `golang-go` is 1.19, too old) "
                         "and run this again.")
    found = run([go, "env", "GOVERSION"], what="Asking Go for its version").strip()
    numbers = tuple(int(n) for n in re.findall(r"\d+", found.removeprefix("go"))[:3])
    if numbers < MINIMUM_GO:
        raise StepFailed(f"{go} is {found}; Jaeger {version()} needs Go {'.'.join(map(str, MINIMUM_GO))} or newer.")
    return go


def go_environment(root: Path) -> dict[str, str]:
    """The environment for running Go with everything it downloads or compiles kept under `root`, away
    from the user's own caches (the Go examples' test builds with it too, under its own root)."""
    return {**os.environ, "GOPATH": str(root / "gopath"), "GOMODCACHE": str(root / "gopath" / "pkg" / "mod"),
            "GOCACHE": str(root / "gocache"), "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def build() -> Path:
    """Build Jaeger into the cache, once: a scratch module that requires it as a tool, then `go build`
    (`go install …@version` refuses a module with replace directives). Concurrent callers (`make test`
    and `make run` both ask) wait for the one that builds."""
    target = binary()
    if target.exists():
        return target
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        go = find_go()
        src = root / "src"
        src.mkdir(exist_ok=True)
        env = go_environment(root) | {"GOFLAGS": "-mod=mod"}
        say(f"building Jaeger {version()} with {go} into {root} "
            "(first time only: measured at 4 to 5 minutes on 2 cores, leaving 3 GB of module and build cache)")
        started = time.monotonic()
        if not (src / "go.mod").exists():
            run([go, "mod", "init", "local/jaeger"], what="Creating the scratch Go module", env=env, cwd=src)
        run([go, "get", "-tool", f"{MODULE}/cmd/jaeger@v{version()}"], what=f"Fetching Jaeger {version()}",
            env=env, cwd=src)
        partial = target.with_name("jaeger.partial")
        run([go, "build", "-o", str(partial), f"{MODULE}/cmd/jaeger"], what="Building Jaeger", env=env, cwd=src)
        partial.rename(target)
        say(f"Jaeger {version()} built in {time.monotonic() - started:.0f} s: {target}")
    return target


class Instance:
    """One Jaeger process: its ports, its configuration and where its pid and log are kept."""

    def __init__(self, name: str = "dev", **ports: int):
        cfg = stack()["jaeger"]
        self.name = name
        self.host = cfg["host"]
        self.ports = {key: ports.get(key) or cfg[key]
                      for key in ("ui_port", "query_grpc_port", "otlp_grpc_port", "otlp_http_port")}
        self.root = VAR / "jaeger" / name

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def pidfile(self) -> Path:
        return self.root / "jaeger.pid"

    @property
    def log(self) -> Path:
        return VAR / "log" / ("jaeger.log" if self.name == "dev" else f"jaeger-{self.name}.log")

    @property
    def ui(self) -> str:
        return f"http://{self.host}:{self.ports['ui_port']}"

    @property
    def otlp_endpoint(self) -> str:
        """What the services take as TSUNAGU_OTLP_ENDPOINT."""
        return f"http://{self.host}:{self.ports['otlp_http_port']}"

    def config(self) -> str:
        """Jaeger's all-in-one pipeline (OTLP in, memory storage, query and the trace viewer out) with
        every listener on loopback: its defaults would also open sampling, health, expvar, zpages and
        metrics ports. The assets path is JSON-quoted, which YAML reads as the same string."""
        h, p = self.host, self.ports
        return f"""\
# Written by deploy/jaegerctl.py for the instance {self.name!r}; changes are overwritten at start.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn

extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 50000
  jaeger_query:
    storage:
      traces: memory_store
    enable_tracing: false
    ui:
      assets_path: {json.dumps(str(VIEWER))}
    http:
      endpoint: {h}:{p['ui_port']}
    grpc:
      endpoint: {h}:{p['query_grpc_port']}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {h}:{p['otlp_grpc_port']}
      http:
        endpoint: {h}:{p['otlp_http_port']}

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"""

    def argv(self) -> list[str]:
        """The command that runs this instance; writes its configuration first."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        (self.root / "ports.json").write_text(json.dumps(self.ports))
        return [str(build()), "--config", str(self.config_file)]

    @classmethod
    def existing(cls, name: str) -> "Instance":
        """The instance as it was started (stop and status need not be told its ports again)."""
        ports_file = VAR / "jaeger" / name / "ports.json"
        return cls(name, **json.loads(ports_file.read_text())) if ports_file.exists() else cls(name)

    def answering(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.ui}/api/services", timeout=2) as response:
                return response.status == 200 and port_open(self.host, self.ports["otlp_http_port"])
        except (urllib.error.URLError, OSError):
            return False

    def check_ports_free(self) -> None:
        for key, port in self.ports.items():
            if port_open(self.host, port):
                raise StepFailed(f"port {self.host}:{port} ({key}) is already in use by another program, so "
                                 f"Jaeger cannot start. Stop that program or choose another port.")

    def wait_until_answering(self, alive, timeout: float = 60) -> None:
        if not wait_until(lambda: self.answering() or not alive(), timeout, 0.3) or not self.answering():
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"
            raise StepFailed(f"Jaeger did not answer on {self.ui} within {timeout:.0f} s; its log:\n{tail}")

    def start(self) -> bool:
        """Start on its own, detached; returns False when a Jaeger already answering was reused."""
        if self.answering():
            say(f"Jaeger is already running on {self.ui}; reusing it")
            return False
        self.stop()  # one of ours that does not answer (still starting, or wedged)
        self.check_ports_free()
        argv = self.argv()
        pid = spawn_detached(argv, log=self.log).pid
        self.pidfile.write_text(str(pid))
        self.wait_until_answering(lambda: read_pid(self.pidfile) is not None)
        say(f"Jaeger {version()} is ready: UI {self.ui}, OTLP {self.otlp_endpoint}")
        return True

    def stop(self) -> None:
        pid = read_pid(self.pidfile)
        if pid:
            terminate(pid, timeout=10)
            say(f"stopped Jaeger ({self.name})")
        self.pidfile.unlink(missing_ok=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["build", "start", "stop", "status", "reset"])
    p.add_argument("--name", default="dev", help="instance name; its files live in var/jaeger/NAME")
    for key in ("ui_port", "query_grpc_port", "otlp_http_port", "otlp_grpc_port"):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=None)
    return p.parse_args(argv)


def main() -> int:
    args = parse(sys.argv[1:])
    ports = {k: v for k, v in vars(args).items() if k.endswith("_port") and v}
    instance = Instance(args.name, **ports) if args.command == "start" else Instance.existing(args.name)
    if args.command == "build":
        print(build())
    elif args.command == "start":
        instance.start()
        print(instance.ui)
    elif args.command == "stop":
        instance.stop()
    elif args.command == "reset":
        instance.stop()
        shutil.rmtree(instance.root, ignore_errors=True)
    elif args.command == "status":
        state = "answering" if instance.answering() else "not answering"
        print(f"{instance.ui}: {state}; pid {read_pid(instance.pidfile) or 'none'}")
        return 0 if instance.answering() else 3
    return 0


if __name__ == "__main__":
    main_guard(main)
