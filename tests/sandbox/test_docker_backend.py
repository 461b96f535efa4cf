"""What only the docker backend has: containers, labels, engine errors, image versions.

The shared conformance and hostile-code suites cover what agent code can do; these
tests look at the containers from the engine's side (`docker inspect`) and at the
errors a user meets before any sandbox starts. They need a Docker engine and the
sandbox image (`cellprompt sandbox build --backend docker`), except the engine-error
tests, which run everywhere the docker SDK is installed.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellprompt.config import reset_settings
from cellprompt.errors import SandboxError, SandboxUnavailableError
from cellprompt.sandbox import HttpSandbox, open_sandbox, state
from cellprompt.sandbox.limits import host_uid, parse_memory
from cellprompt.version import __version__
from tests.conftest import require_sandbox_backend

docker = pytest.importorskip("docker", reason="the docker SDK (cellprompt[docker]) is needed")

from cellprompt.sandbox import docker_backend as db  # noqa: E402  (after the importorskip)
from cellprompt.sandbox import docker_container as dc  # noqa: E402
from cellprompt.sandbox import docker_image as di  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    require_sandbox_backend("docker")
    return di.connect()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.h5ad"
    path.write_bytes(b"not really hdf5, only bytes to read back")
    return path


@pytest.fixture(scope="module")
def sandbox(engine: docker.DockerClient, dataset: Path) -> Iterator[HttpSandbox]:
    with open_sandbox("docker", [dataset], memory="1g", cpus=1.5, pids=256) as sb:
        yield sb


def _container(engine: docker.DockerClient, sb: HttpSandbox) -> docker.models.containers.Container:
    return engine.containers.get(dc.container_name(sb.id))


def _run(sb: HttpSandbox, code: str) -> str:
    result = sb.execute(textwrap.dedent(code), timeout=60)
    assert result.final_status == "ok", result.text()
    return result.text()


# -- the container as the engine sees it ----------------------------------------------------

def test_container_is_labelled_as_ours(engine: docker.DockerClient, sandbox: HttpSandbox) -> None:
    labels = _container(engine, sandbox).labels
    assert labels["org.cellprompt.sandbox"] == sandbox.id
    assert labels["org.cellprompt.version"] == __version__
    assert labels["org.cellprompt.parent-pid"] == str(os.getpid())
    assert labels["org.cellprompt.detached"] == "0"
    assert labels["org.cellprompt.host"] == socket.gethostname()


def test_limits_and_lockdown_as_inspected(engine: docker.DockerClient,
                                          sandbox: HttpSandbox, dataset: Path) -> None:
    attrs = _container(engine, sandbox).attrs
    host = attrs["HostConfig"]
    assert host["Memory"] == parse_memory("1g")
    assert host["MemorySwap"] == parse_memory("1g")  # no swap beyond the memory limit
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 256
    assert host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"])
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert "/tmp" in host["Tmpfs"]
    assert not host.get("PortBindings")
    assert not attrs["NetworkSettings"].get("Ports")
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/data/tiny.h5ad"]["RW"] is False
    assert mounts["/data/tiny.h5ad"]["Source"] == str(dataset.resolve())
    assert "/workspace" not in mounts  # no host folder: a tmpfs inside the container
    workspace = host["Tmpfs"]["/workspace"].split(",")
    assert {"nosuid", "nodev", f"size={parse_memory('1g') // 2}"} <= set(workspace)
    assert {"nosuid", "nodev"} <= set(host["Tmpfs"]["/tmp"].split(","))
    assert mounts[db.RUN_IN]["RW"] is True and Path(mounts[db.RUN_IN]["Source"]).parent \
        == state.sandbox_dir(sandbox.id)
    seccomp = next(o for o in host["SecurityOpt"] if o.startswith("seccomp="))
    profile = json.loads(seccomp.removeprefix("seccomp="))
    denied = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert {"ptrace", "keyctl", "bpf", "perf_event_open", "unshare", "setns", "mount",
            "kexec_load", "init_module", "chmod", "fchmodat"} <= denied
    assert attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert not any(k.endswith(("_KEY", "_TOKEN", "_SECRET")) for k in env)


def test_inside_no_root_no_caps_no_network_read_only(sandbox: HttpSandbox) -> None:
    out = _run(sandbox, """
        import os, socket
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines()
                      if ":\\t" in l)
        def writable(p):
            try:
                open(p, "w").close(); os.remove(p); return True
            except OSError:
                return False
        print(os.getuid(), int(status["CapEff"], 16), status["NoNewPrivs"].strip(),
              sorted(n for _, n in socket.if_nameindex()),
              writable("/opt/x"), writable("/etc/x"), writable("/data/x"),
              writable("/tmp/x"), writable("/workspace/x"),
              open("/data/tiny.h5ad", "rb").read(8))
    """)
    # under root a uid of the sandbox's own (RLIMIT_NPROC then limits it alone), else ours
    uid = host_uid(sandbox.id) if os.getuid() == 0 else os.getuid()
    assert out.split("\n")[-1] == (f"{uid} 0 1 ['lo'] False False False True True b'not real'")


def test_service_is_pinned_to_the_containers_init_child(engine: docker.DockerClient,
                                                       sandbox: HttpSandbox) -> None:
    """The peer every connection must have is the service: a direct child of docker-init."""
    import psutil

    peer = sandbox.launched.endpoint.peer_pid
    assert peer is not None
    init = _container(engine, sandbox).attrs["State"]["Pid"]
    assert psutil.Process(peer).ppid() == init
    assert "service" in psutil.Process(peer).cmdline()
    assert state.read_record(sandbox.id).peer_pid == peer  # for `sandbox exec` and reattach


def test_oom_kills_reads_the_containers_memory_cgroup(sandbox: HttpSandbox) -> None:
    before = sandbox.launched.oom_kills()
    assert isinstance(before, int)
    r = sandbox.execute("x = b'\\x01' * (3 * 1024**3)", timeout=60)
    assert r.final_status == "died", r.text()
    assert sandbox.launched.oom_kills() == before + 1


def test_dataset_is_bound_not_copied(sandbox: HttpSandbox, dataset: Path) -> None:
    """A bind shows the host file itself: a change on the host is seen inside at once."""
    dataset.write_bytes(b"changed on the host after start")
    try:
        assert "b'changed'" in _run(sandbox, "print(open('/data/tiny.h5ad','rb').read(7))")
    finally:
        dataset.write_bytes(b"not really hdf5, only bytes to read back")


def test_parallel_sandboxes_get_unique_containers(engine: docker.DockerClient) -> None:
    opened: list[HttpSandbox] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_sandbox("docker", memory="512m", cpus=0.5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        names = {_container(engine, sb).name for sb in opened}
        assert len(names) == 3
        for sb in opened:
            assert _run(sb, f"print('{sb.id}')").strip() == sb.id
    finally:
        for sb in opened:
            sb.close()
    for name in names:
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(name)


def test_close_removes_container_and_folders(engine: docker.DockerClient) -> None:
    sb = open_sandbox("docker", memory="512m", cpus=0.5)
    name, folder = _container(engine, sb).name, state.sandbox_dir(sb.id)
    sb.write_file("left.txt", b"x")
    sb.close()
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(name)
    assert not folder.exists()


# -- leaked containers ----------------------------------------------------------------------

LEAK = """
import os, sys
from cellprompt.sandbox import open_sandbox
sb = open_sandbox("docker", memory="512m", cpus=0.5, detached=sys.argv[1] == "detached")
print(sb.id, flush=True)
os._exit(0)  # a crash: no close, no finaliser, no atexit
"""


def _leak(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", LEAK, mode], capture_output=True, text=True,
                         timeout=180, check=True, cwd=REPO)
    return out.stdout.strip().splitlines()[-1]


def test_cleanup_removes_containers_of_dead_parents(engine: docker.DockerClient) -> None:
    # detached first: each new launcher sweeps stale sandboxes, as every cellprompt command does
    detached = _leak("detached")
    leaked = _leak("attached")
    try:
        assert engine.containers.get(f"cellprompt-{leaked}").status == "running"
        removed = db.DockerBackend().cleanup_stale()
        assert leaked in removed
        assert detached not in removed  # detached sandboxes outlive their launcher by design
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(f"cellprompt-{leaked}")
        assert not state.sandbox_dir(leaked).exists()
        assert engine.containers.get(f"cellprompt-{detached}").status == "running"
        # `sandbox stop --all`: live ones go too
        assert detached in db.DockerBackend().cleanup_stale(include_live=True)
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(f"cellprompt-{detached}")
    finally:
        for sid in (leaked, detached):
            dc.remove_container(engine, f"cellprompt-{sid}", state.sandbox_dir(sid))


def test_cleanup_removes_folders_whose_container_vanished(engine: docker.DockerClient) -> None:
    """A folder whose launcher died goes; one whose container is still being created stays."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan, starting = state.new_sandbox_id(), state.new_sandbox_id()
    for sid, parent in ((orphan, dead.pid), (starting, os.getpid())):
        state.make_dirs(sid)
        state.write_record(state.SandboxRecord(sandbox_id=sid, backend="docker",
                                               container=dc.container_name(sid),
                                               parent_pid=parent))
    try:
        removed = db.DockerBackend().cleanup_stale()
        assert orphan in removed and not state.sandbox_dir(orphan).exists()
        assert starting not in removed and state.sandbox_dir(starting).exists()
    finally:
        state.remove_dir(orphan)
        state.remove_dir(starting)


def test_detached_sandbox_can_be_reattached(engine: docker.DockerClient) -> None:
    sid = _leak("detached")
    try:
        launched = db.DockerBackend().attach(state.read_record(sid))
        with HttpSandbox(launched, "docker") as sb:
            assert _run(sb, "print(6*7)").strip() == "42"
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(f"cellprompt-{sid}")
        assert not state.sandbox_dir(sid).exists()
    finally:
        dc.remove_container(engine, f"cellprompt-{sid}", state.sandbox_dir(sid))


def test_sandbox_whose_container_vanished_can_still_be_stopped(
        engine: docker.DockerClient) -> None:
    sid = _leak("detached")
    try:
        engine.api.remove_container(f"cellprompt-{sid}", force=True)  # e.g. `docker rm -f`
        launched = db.DockerBackend().attach(state.read_record(sid))
        assert not launched.alive() and launched.logs() == ""
        launched.stop()
        assert not state.sandbox_dir(sid).exists()
    finally:
        dc.remove_container(engine, f"cellprompt-{sid}", state.sandbox_dir(sid))


# -- image versions and build failures ------------------------------------------------------

def _derived_image(engine: docker.DockerClient, tag: str, labels: dict[str, str]) -> str:
    """The sandbox image with other labels (as an older cellprompt's build would have)."""
    dockerfile = f"FROM {di.image_tag()}\nLABEL " + " ".join(
        f"{k}={json.dumps(v)}" for k, v in labels.items())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    buf.seek(0)
    engine.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return tag


@pytest.fixture
def image_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.delenv("CELLPROMPT_DOCKER_IMAGE", raising=False)
    reset_settings()


def _use_image(mp: pytest.MonkeyPatch, tag: str) -> None:
    mp.setenv("CELLPROMPT_DOCKER_IMAGE", tag)
    reset_settings()


def test_image_of_another_version_asks_for_a_rebuild(engine: docker.DockerClient,
                                                     image_setting: pytest.MonkeyPatch) -> None:
    tag = _derived_image(engine, "cellprompt-test-old:1", {"org.cellprompt.version": "0.0.1"})
    try:
        _use_image(image_setting, tag)
        with pytest.raises(SandboxUnavailableError) as err:
            db.DockerBackend().check()
        assert "built for cellprompt 0.0.1" in err.value.message
        assert "rebuild it with `cellprompt sandbox build --backend docker`" in err.value.message
        assert "\n" not in err.value.message
    finally:
        engine.images.remove(tag, force=True)


def test_image_with_other_service_code_asks_for_a_rebuild(
        engine: docker.DockerClient, image_setting: pytest.MonkeyPatch) -> None:
    tag = _derived_image(engine, "cellprompt-test-stale:1",
                         {"org.cellprompt.service-hash": "0000000000000000"})
    try:
        _use_image(image_setting, tag)
        with pytest.raises(SandboxUnavailableError, match=r"older kernel service.*rebuild"):
            db.DockerBackend().check()
    finally:
        engine.images.remove(tag, force=True)


def test_missing_image_names_the_build_command(engine: docker.DockerClient,
                                               image_setting: pytest.MonkeyPatch) -> None:
    _use_image(image_setting, "cellprompt-sandbox:no-such-version")
    with pytest.raises(SandboxUnavailableError) as err:
        db.DockerBackend().check()
    assert "cellprompt-sandbox:no-such-version is missing" in err.value.message
    assert "cellprompt sandbox build --backend docker" in err.value.message


def test_build_failure_is_one_line_with_the_failing_step(engine: docker.DockerClient) -> None:
    """A base image without a shell: the build's first RUN step fails."""
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w") as tar:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    engine.api.import_image_from_data(empty.getvalue(), repository="cellprompt-test-empty",
                                      tag="1")
    lines: list[str] = []
    before = {i.id for i in engine.images.list(filters={"dangling": True})}
    try:
        with pytest.raises(SandboxError) as err:
            di.build_image(base_image="cellprompt-test-empty:1", tag="cellprompt-test-broken:1",
                           progress=lines.append)
        assert err.value.message.startswith("docker image build failed at Step ")
        assert "RUN" in err.value.message
        assert "\n" not in err.value.message
        assert any(line.startswith("Step 1/") for line in lines)  # progress came through
    finally:
        for image in engine.images.list(filters={"dangling": True}):
            if image.id not in before:  # the failed build's last good step
                engine.images.remove(image.id, force=True)
        engine.images.remove("cellprompt-test-empty:1", force=True)


def test_unavailable_base_image_is_named(engine: docker.DockerClient) -> None:
    # a registry on a closed loopback port: the pull fails at once, no traffic leaves the host
    with pytest.raises(SandboxError) as err:
        di.build_image(base_image="127.0.0.1:9/nothing:here", tag="cellprompt-test-broken:2")
    assert "base image 127.0.0.1:9/nothing:here is not available" in err.value.message
    assert "CELLPROMPT_DOCKER_BASE_IMAGE" in err.value.message


# -- engine errors (no engine needed) -------------------------------------------------------

def test_no_engine_is_one_line_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(SandboxUnavailableError) as err:
        db.DockerBackend().check()
    msg = err.value.message
    assert msg.startswith(f"no Docker engine answers at unix://{tmp_path}/no-engine.sock")
    assert "start Docker" in msg and "DOCKER_HOST" in msg and "\n" not in msg


def test_permission_denied_on_the_socket(tmp_path: Path) -> None:
    """A socket we may not connect to; as root, checked from a child that dropped to nobody."""
    path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    path.chmod(0)
    tmp_path.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: modules are loaded already, so nobody need not read them
        try:
            os.close(read_end)
            if os.getuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.environ["DOCKER_HOST"] = f"unix://{path}"
            try:
                db.DockerBackend().check()
                message = "no error"
            except Exception as exc:
                message = f"{type(exc).__name__} {exc}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        message = fh.read().decode()
    os.waitpid(pid, 0)
    listener.close()
    assert message.startswith(
        f"SandboxUnavailableError permission denied on the Docker socket unix://{path}"), message
    assert "docker` group" in message and "\n" not in message


def test_dataset_the_container_user_cannot_read_is_a_clear_error(engine: docker.DockerClient,
                                                                 tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("containers run as the caller's own uid unless the caller is root")
    private = tmp_path / "private.h5ad"
    private.write_bytes(b"secret-ish")
    private.chmod(0o600)
    before = {r.sandbox_id for r in state.all_records()}
    with pytest.raises(SandboxError, match=r"not readable by the docker sandbox's user .*chmod a\+r"):
        open_sandbox("docker", [private])
    assert {r.sandbox_id for r in state.all_records()} == before  # nothing left behind
