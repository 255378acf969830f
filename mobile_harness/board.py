"""An emulated arm64 Linux board on this machine: a Debian arm64 chroot run by qemu-user, reached over ssh.

`pocketbert device board up` builds the board once (debootstrap + the runtimes pinned to the host's
versions) under the user's cache folder, mounts what the chroot needs, and starts the board's own sshd on
127.0.0.1 with a throwaway key; the harness then reaches it as the target `board:arm64`. `down` stops only
the processes `up` started (by pid, and what runs inside this chroot) and unmounts only what `up` mounted.

Facts that shaped this (measured, see the shared STACK notes): qemu 7.2 shows the host's x86 /proc/cpuinfo
inside the chroot and onnxruntime then segfaults, so an arm64 cpuinfo matching the emulated core is
bind-mounted over it; qemu's default CPU `max` computes int8 wrong in every runtime, so a real core is named
with QEMU_CPU; pip in the chroot needs the host's extra CA certificates.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import read_json, write_json
from pocketbert.mobile_harness.linux import SshTarget
from pocketbert.mobile_harness.targets import DEFAULT_TIMEOUT_S, Target, TargetOptions, register_target, split_spec

ARCH = "arm64"
DEBIAN_SUITE = "bookworm"
BOARD_PYTHON = "/opt/venv/bin/python"
DEBIAN_PACKAGES = {"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static",
                   "update-binfmts": "binfmt-support", "ssh-keygen": "openssh-client", "ssh": "openssh-client"}
CHROOT_PACKAGES = "ca-certificates,python3,python3-venv,openssh-server"
# The host's runtime packages, installed on the board at the host's exact versions (pip would pick newer ones).
RUNTIME_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert")
EXECUTORCH_PACKAGES = ("torch", "executorch")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class EmulatedCore:
    """One arm64 core qemu emulates correctly, and the /proc/cpuinfo a real one shows."""

    name: str
    features: str
    variant: str
    part: str
    revision: int

    def cpuinfo(self, cores: int) -> str:
        """/proc/cpuinfo as `cores` of this core show it, bind-mounted into the chroot (qemu would show the host's)."""
        block = (f"BogoMIPS\t: 50.00\nFeatures\t: {self.features}\nCPU implementer\t: 0x41\n"
                 f"CPU architecture: 8\nCPU variant\t: {self.variant}\nCPU part\t: {self.part}\n"
                 f"CPU revision\t: {self.revision}\n")
        return "".join(f"processor\t: {i}\n{block}\n" for i in range(cores))


# Feature lists as the Linux kernel prints them on each core (qemu's models of these cores expose the same).
CORES = {core.name: core for core in (
    EmulatedCore("cortex-a76", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                 "lrcpc dcpop asimddp", "0x4", "0xd0b", 1),
    EmulatedCore("neoverse-n1", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                 "lrcpc dcpop asimddp ssbs", "0x3", "0xd0c", 1),
    EmulatedCore("cortex-a72", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "0x0", "0xd08", 3),
)}
DEFAULT_CORE = "cortex-a76"
# The features that decide which int8 / fp16 / bf16 kernels a runtime runs: a row names a core only when the
# features its process ran with (AT_HWCAP/AT_HWCAP2, device_runner.running_hwcaps) agree with that core's on these.
KERNEL_FEATURES = ("asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2", "sme")


def kernel_features(features) -> tuple[str, ...]:
    """The KERNEL_FEATURES among `features` (a cpuinfo line or a list): what two cores must share to run alike."""
    present = set(features.split() if isinstance(features, str) else features)
    return tuple(name for name in KERNEL_FEATURES if name in present)


def core_that_ran(configured: str, facts: dict | None) -> dict:
    """What a row says about the emulated core: the configured one when the process's own features (facts from
    device_runner.device_facts, cpu_features_source "auxv") agree with it on KERNEL_FEATURES, or when they cannot
    be read; otherwise the known core they match (None if none or several), with what it ran with, so that a row
    never names a core the process did not run on (a board restarted with another --cpu, a lost QEMU_CPU: qemu's
    `max`)."""
    facts = facts or {}
    if facts.get("cpu_features_source") != "auxv" or not facts.get("cpu_features"):
        return {"cpu": configured, "confirmed": False}
    ran = kernel_features(facts["cpu_features"])
    if ran == kernel_features(CORES[configured].features):
        return {"cpu": configured, "confirmed": True}
    matches = [name for name, core in CORES.items() if kernel_features(core.features) == ran]
    return {"cpu": matches[0] if len(matches) == 1 else None, "confirmed": False, "configured": configured,
            "ran_with": list(ran)}


@dataclass
class BoardState:
    """What `up` started and mounted, so `down` (or a later `up` after a crash) undoes exactly that."""

    cpu: str
    port: int
    sshd_pid: int | None = None
    mounts: list[str] = field(default_factory=list)


class Board:
    """The arm64 board's files under the cache folder: rootfs, keys, known_hosts, state."""

    def __init__(self, home: Path | None = None):
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.home = home or cache / "pocketbert" / "board" / ARCH
        self.rootfs = self.home / "rootfs"
        self.client_key = self.home / "client_ed25519"
        self.known_hosts = self.home / "known_hosts"
        self.state_file = self.home / "state.json"
        self.sshd_log = self.home / "sshd.log"
        self.build_log = self.home / "build.log"
        self.stamp = self.rootfs / "etc" / "pocketbert-board.json"
        self.sshd_config = "/etc/ssh/pocketbert_sshd_config"

    # ---- state -----------------------------------------------------------------------------------
    def built(self) -> dict | None:
        """The stamp the build writes last ({"packages": {name: version}, "suite"}), or None when not built."""
        return read_json(self.stamp, "board stamp") if self.stamp.is_file() else None

    def state(self) -> BoardState | None:
        """What the last `up` recorded it started and mounted, or None when nothing is recorded."""
        if not self.state_file.is_file():
            return None
        return BoardState(**read_json(self.state_file, "board state"))

    def running(self, state: BoardState | None = None) -> bool:
        """Whether the sshd recorded in `state` (default: the saved state) is alive and really this board's."""
        state = state or self.state()
        return bool(state and state.sshd_pid and self._is_our_sshd(state.sshd_pid))

    def _is_our_sshd(self, pid: int) -> bool:
        # A pid from before a reboot may now belong to anything: it is ours only if it runs our config.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return self.sshd_config.encode() in cmdline and self._root_of(pid) == self.rootfs.resolve()

    @staticmethod
    def _root_of(pid: int) -> Path | None:
        try:
            return Path(os.readlink(f"/proc/{pid}/root"))
        except OSError:
            return None

    def ssh_options(self) -> list[str]:
        """`-o` options that reach the board with its own key and known_hosts, never the user's (command-line
        options win over any ~/.ssh/config entry)."""
        return [f"IdentityFile={self.client_key}", "IdentitiesOnly=yes", "IdentityAgent=none",
                f"UserKnownHostsFile={self.known_hosts}", "GlobalKnownHostsFile=/dev/null",
                "StrictHostKeyChecking=yes", "LogLevel=ERROR"]

    def status(self) -> dict:
        """What `device board status` prints: target, built, up, cpu and port (when up), runtimes, rootfs."""
        stamp, state = self.built(), self.state()
        live = state if state is not None and self.running(state) else None
        return {"target": f"board:{ARCH}", "built": stamp is not None, "up": live is not None,
                "cpu": live.cpu if live else None, "port": live.port if live else None,
                "runtimes": (stamp or {}).get("packages", {}), "rootfs": str(self.rootfs)}


def missing_prerequisites() -> list[str]:
    """What this machine lacks to build or start the board (root, Debian packages), as readable items."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (chroot and mounts need it; run as root)")
    absent = sorted({pkg for tool, pkg in DEBIAN_PACKAGES.items() if not shutil.which(tool)})
    if absent:
        missing.append(f"Debian packages {' '.join(absent)} (`apt-get install -y {' '.join(absent)}`)")
    return missing


def require_prerequisites() -> None:
    """Refuse in one line, naming all that is missing, before anything is built or mounted."""
    missing = missing_prerequisites()
    if missing:
        raise PocketbertError(f"the emulated {ARCH} board needs " + " and ".join(missing))


def host_mirror() -> str:
    """The Debian mirror this host's apt uses (so a proxy or local mirror the host needs is used too)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            content = source.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^URIs:\s*(\S+)", content, re.MULTILINE) + \
                re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", content, re.MULTILINE):
            if "security" not in uri:
                return uri
    return "http://deb.debian.org/debian"


def host_runtime_pins(with_executorch: bool) -> list[str]:
    """`package==version` for each runtime at the version installed here (local tags like +cpu dropped)."""
    pins = []
    for package in RUNTIME_PACKAGES + (EXECUTORCH_PACKAGES if with_executorch else ()):
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise PocketbertError(f"'{package}' is not installed on this host, so the board cannot pin it; "
                                  "run `make setup` first") from None
        pins.append(f"{package}=={version.split('+')[0]}")
    return pins


def chroot_env(cpu: str) -> dict[str, str]:
    """A clean environment for programs in the chroot: the host's pip settings point at host-only paths."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "QEMU_CPU": cpu, "DEBIAN_FRONTEND": "noninteractive"}
    env.update({k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")
                or k in ("PIP_INDEX_URL", "PIP_DEFAULT_TIMEOUT")})
    return env


def mounted_points() -> list[str]:
    """Every mount point of this process's mount namespace (/proc/self/mountinfo, escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def mounts_under(path: Path) -> list[str]:
    """The mount points at or below `path`, in mount order (so they are unmounted in reverse)."""
    prefix = str(path.resolve())
    return [p for p in mounted_points() if p == prefix or p.startswith(prefix + "/")]


def unmount(point: str) -> None:
    """Unmount `point`, detaching it lazily when it is still busy."""
    result = subprocess.run(["umount", point], capture_output=True, text=True)
    if result.returncode != 0 and point in mounted_points():
        # Still busy (a process of the board is exiting): detach it, the kernel frees it when unused.
        subprocess.run(["umount", "--lazy", point], capture_output=True)


def remove_tree(path: Path) -> None:
    """rm -rf a rootfs, but never through a mount (a bound /dev or /proc would be emptied with it)."""
    for point in reversed(mounts_under(path)):
        unmount(point)
    if mounts_under(path):
        raise PocketbertError(f"'{path}' still has mounts ({', '.join(mounts_under(path))}); unmount them, then rerun")
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now, for the board's sshd."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Builder:
    """Builds the rootfs once, step by step, with one progress bar and a log of every tool's output."""

    def __init__(self, board: Board, cpu: str, with_executorch: bool):
        self.board, self.cpu, self.with_executorch = board, cpu, with_executorch

    def _stream(self, argv: list[str], bar, env: dict | None = None) -> None:
        with open(self.board.build_log, "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       env=env, errors="replace")
            last = ""
            assert process.stdout is not None  # stdout=PIPE
            for line in process.stdout:
                log.write(line)
                if line.strip():
                    last = line.strip()
                    bar.set_postfix_str(last[:60], refresh=True)
            code = process.wait()
        if code != 0:
            raise PocketbertError(f"building the {ARCH} board failed at `{' '.join(argv[:3])} ...`: {last} "
                                  f"(full log: {self.board.build_log}); rerun `pocketbert device board up`")

    def _in_chroot(self, root: Path, argv: list[str], bar) -> None:
        self._stream(["chroot", str(root), *argv], bar, env=chroot_env(self.cpu))

    def build(self) -> None:
        """Build into a temporary sibling and rename it into place: a killed build leaves no half board."""
        board = self.board
        board.home.mkdir(parents=True, exist_ok=True)
        for stale in board.home.glob(".rootfs.tmp-*"):
            if not Path(f"/proc/{stale.name.rsplit('-', 1)[-1]}").exists():
                remove_tree(stale)
        tmp = board.home / f".rootfs.tmp-{os.getpid()}"
        board.build_log.write_text("")
        pins = host_runtime_pins(self.with_executorch)
        steps = ["debootstrap", "certificates", "venv", "runtimes"]
        with tqdm(total=len(steps), desc=f"building the {ARCH} board", unit="step") as bar:
            try:
                bar.set_description("debootstrap arm64 bookworm")
                self._stream(["debootstrap", f"--arch={ARCH}", "--variant=minbase", f"--include={CHROOT_PACKAGES}",
                              DEBIAN_SUITE, str(tmp), host_mirror()], bar)
                bar.update()
                with mounted_proc(tmp, self.cpu):
                    bar.set_description("CA certificates")
                    self._trust_host_certificates(tmp, bar)
                    bar.update()
                    bar.set_description("python venv")
                    self._in_chroot(tmp, ["python3", "-m", "venv", "/opt/venv"], bar)
                    bar.update()
                    bar.set_description("runtimes (pip)")
                    self._in_chroot(tmp, [BOARD_PYTHON, "-m", "pip", "install", "--progress-bar", "off", *pins], bar)
                    bar.update()
            except BaseException:
                remove_tree(tmp)
                raise
        write_json(tmp / "etc" / "pocketbert-board.json",
                   {"packages": dict(pin.split("==") for pin in pins), "suite": DEBIAN_SUITE})
        if board.rootfs.exists():
            remove_tree(board.rootfs)
        tmp.rename(board.rootfs)

    def add_executorch(self) -> None:
        """The heavy option on an existing board: torch (the aarch64 wheel is the CUDA build) + executorch."""
        pins = host_runtime_pins(True)
        with tqdm(total=1, desc="executorch + torch (~3 GB of aarch64 wheels)", unit="step") as bar:
            with mounted_proc(self.board.rootfs, self.cpu):
                self._in_chroot(self.board.rootfs, [BOARD_PYTHON, "-m", "pip", "install", "--progress-bar", "off",
                                                    *pins], bar)
            bar.update()
        write_json(self.board.stamp, {"packages": dict(pin.split("==") for pin in pins), "suite": DEBIAN_SUITE})

    def _trust_host_certificates(self, root: Path, bar) -> None:
        # The host may reach PyPI through a TLS-inspecting proxy whose CA only the host trusts.
        extra = Path("/usr/local/share/ca-certificates")
        if extra.is_dir():
            shutil.copytree(extra, root / extra.relative_to("/"), dirs_exist_ok=True)
        shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
        self._in_chroot(root, ["update-ca-certificates"], bar)


class mounted_proc:
    """/proc (with an arm64 cpuinfo), /sys and /dev in the chroot for the length of the build steps."""

    def __init__(self, root: Path, cpu: str):
        self.root, self.cpu = root, cpu

    def __enter__(self):
        self.points = mount_board_filesystems(self.root, self.cpu, Path(f"{self.root}.cpuinfo"))
        return self

    def __exit__(self, *exc):
        for point in reversed(self.points):
            unmount(point)
        Path(f"{self.root}.cpuinfo").unlink(missing_ok=True)


def mount_board_filesystems(root: Path, cpu: str, cpuinfo_file: Path) -> list[str]:
    """Mount /proc (with the emulated core's cpuinfo over it), /sys and /dev in the chroot; return what was mounted."""
    cpuinfo_file.write_text(CORES[cpu].cpuinfo(os.cpu_count() or 1))
    done: list[str] = []
    already = set(mounted_points())
    plan = [(["-t", "proc", "proc"], root / "proc"),
            (["--bind", str(cpuinfo_file)], root / "proc" / "cpuinfo"),
            (["-t", "sysfs", "-o", "ro", "sysfs"], root / "sys"),
            (["--bind", "/dev"], root / "dev")]
    for args, point in plan:
        point_str = str(point.resolve())
        if point_str in already and point.name != "cpuinfo":
            continue
        result = subprocess.run(["mount", *args, point_str], capture_output=True, text=True)
        if result.returncode != 0:
            for mounted in reversed(done):
                unmount(mounted)
            raise PocketbertError(f"mounting {point_str} failed: {result.stderr.strip()}; are you root?")
        done.append(point_str)
    return done


def enable_binfmt() -> list[str]:
    """Let the kernel run arm64 binaries through qemu (the F flag makes it work inside a chroot too).
    Returns [the binfmt_misc mount point] when this call mounted it, so `down` unmounts it again."""
    mounted = []
    if not (BINFMT_DIR / "register").exists():
        if subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True).returncode == 0:
            mounted.append(str(BINFMT_DIR))
    result = subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
    if not (BINFMT_DIR / "qemu-aarch64").exists() or "enabled" not in (BINFMT_DIR / "qemu-aarch64").read_text():
        raise PocketbertError(f"cannot register qemu-aarch64 with binfmt_misc ({result.stderr.strip() or 'not enabled'}); "
                              "reinstall qemu-user-static and binfmt-support")
    return mounted


def board_up(cpu: str = DEFAULT_CORE, with_executorch: bool = False, board: Board | None = None) -> dict:
    """Build (once), mount, start sshd; idempotent, and recovers from a crash or reboot. Returns status()."""
    board = board or Board()
    if cpu not in CORES:
        raise PocketbertError(f"--cpu {cpu} is not one qemu emulates correctly here; pick one of {', '.join(CORES)}")
    require_prerequisites()
    state = board.state()
    if state is not None and board.running(state) and state.cpu == cpu and \
            (not with_executorch or "executorch" in (board.built() or {}).get("packages", {})):
        return board.status()
    board_down(board)
    state = BoardState(cpu=cpu, port=free_port())
    state.mounts = enable_binfmt()
    write_json(board.state_file, asdict(state))  # from here on, a crash is undone by `down` or the next `up`
    stamp = board.built()
    if stamp is None:
        Builder(board, cpu, with_executorch).build()
    elif with_executorch and "executorch" not in stamp["packages"]:
        Builder(board, cpu, with_executorch).add_executorch()
    state.mounts += mount_board_filesystems(board.rootfs, cpu, board.home / "cpuinfo")
    write_json(board.state_file, asdict(state))
    _prepare_ssh(board, state)
    with open(board.sshd_log, "w") as log:
        process = subprocess.Popen(["chroot", str(board.rootfs), "/usr/sbin/sshd", "-D", "-e", "-f", board.sshd_config],
                                   env=chroot_env(cpu), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    state.sshd_pid = process.pid
    write_json(board.state_file, asdict(state))
    _wait_ready(board, state, process)
    return board.status()


def board_status(board: Board | None = None) -> dict:
    """Board.status() of the board under the user's cache folder (or `board`); starts nothing."""
    return (board or Board()).status()


def _prepare_ssh(board: Board, state: BoardState) -> None:
    """The board's own host key, client key and known_hosts; the user's ~/.ssh is never read or written."""
    root = board.rootfs
    host_key = root / "etc" / "ssh" / "pocketbert_host_ed25519"
    for key in (host_key, board.client_key):
        if not key.is_file():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pocketbert-board", "-f", str(key)],
                           check=True, capture_output=True)
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(f"{board.client_key}.pub").read_text())
    authorized.chmod(0o600)
    (root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    (root / board.sshd_config.lstrip("/")).write_text(
        f"Port {state.port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/pocketbert_host_ed25519\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nPidFile none\nAuthorizedKeysFile .ssh/authorized_keys\n"
        # Every program a session starts is a new qemu process: it must be told the core again.
        f"SetEnv QEMU_CPU={state.cpu}\n")
    host_pub = Path(f"{host_key}.pub").read_text().split()[:2]
    board.known_hosts.write_text(f"[127.0.0.1]:{state.port} {' '.join(host_pub)}\n")


def _wait_ready(board: Board, state: BoardState, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    options = [*board.ssh_options(), "BatchMode=yes", "ConnectTimeout=10"]
    argv = ["ssh", *(arg for option in options for arg in ("-o", option)), "-p", str(state.port),
            "--", "root@127.0.0.1", "true"]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            board_down(board)
            raise PocketbertError(f"the board's sshd exited at start: {_last_line(board.sshd_log)}; see {board.sshd_log}")
        if subprocess.run(argv, capture_output=True, timeout=60).returncode == 0:
            return
        time.sleep(1)
    board_down(board)
    raise PocketbertError(f"the board's sshd did not answer within {READY_TIMEOUT_S} s; see {board.sshd_log}")


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.is_file() else []
    return lines[-1] if lines else "no output"


def board_processes(board: Board) -> list[int]:
    """Processes whose root is this board's rootfs: the sshd `up` started and whatever its sessions run."""
    rootfs = board.rootfs.resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and board._root_of(int(entry.name)) == rootfs:
            pids.append(int(entry.name))
    return pids


def board_down(board: Board | None = None) -> dict:
    """Stop what `up` started and unmount what it mounted; nothing else is touched.

    The rootfs is this tool's private folder: a process whose root it is, or a mount below it, comes from
    `up` or a build step (also one that was killed before it could record it)."""
    board = board or Board()
    state = board.state()
    if state and state.sshd_pid and board._is_our_sshd(state.sshd_pid):
        _terminate([state.sshd_pid])
    if board.rootfs.is_dir():
        _terminate(board_processes(board))
        for point in reversed(mounts_under(board.rootfs)):
            unmount(point)
    mounted = set(mounted_points())
    for point in reversed(state.mounts if state else []):
        if point in mounted:
            unmount(point)
    for leftover in (board.home / "cpuinfo", Path(f"{board.rootfs}.cpuinfo"), board.state_file):
        leftover.unlink(missing_ok=True)
    return board.status()


def _terminate(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if Path(f"/proc/{pid}").exists() and not _zombie(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap our own child when `up` and `down` run in one process
        except ChildProcessError:
            pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@register_target
class BoardTarget(SshTarget):
    """`board:arm64`: the emulated board `device board up` started, reached with its own key and known_hosts."""

    kind = "board"
    usage = f"board:{ARCH}"

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 board: Board | None = None):
        arch = split_spec(spec, self.kind)
        if arch != ARCH:
            raise PocketbertError(f"target '{spec}': the emulated board is {self.usage} (no other architecture yet)")
        self.board = board or Board()
        state = self.board.state()
        if state is None or not self.board.running(state):
            raise PocketbertError(f"{self.usage} is not up; start it with `pocketbert device board up` (or `make board`)")
        self.state: BoardState = state
        super().__init__(f"ssh:root@127.0.0.1:{self.state.port}", workdir, timeout, self.board.ssh_options(), BOARD_PYTHON)
        self.spec = spec

    @classmethod
    def from_spec(cls, spec: str, options: TargetOptions) -> Target:
        return cls(spec, options.workdir, options.timeout)

    @classmethod
    def discover(cls) -> list[dict]:
        status = board_status()
        if status["up"]:
            return [{"target": cls.usage, "state": "ready", "note": f"emulated {status['cpu']} (qemu-user) on this host"}]
        return [{"target": cls.usage, "state": "down", "note": "start it with `pocketbert device board up` (needs root)"}]

    emulated = True  # timings are qemu's: run_on_device skips the timed runs where --eval only wants outputs

    def emulation_facts(self, facts: dict | None = None) -> dict:
        """The row's device model and emulation mark, naming the core the process ran on (see core_that_ran)."""
        # Timings under qemu are not latencies: the reports read this mark and keep them out of every figure.
        core = core_that_ran(self.state.cpu, facts)
        if "ran_with" not in core:
            return {"model": f"emulated {ARCH} board ({self.state.cpu}, qemu-user)",
                    "emulated": {"emulator": "qemu-user", "cpu": self.state.cpu}}
        named = core["cpu"] or "an unknown core"
        return {"model": f"emulated {ARCH} board ({named}, qemu-user; not the configured {self.state.cpu}: it ran with "
                         f"{' '.join(core['ran_with']) or 'none of ' + ' '.join(KERNEL_FEATURES)})",
                "soc": CORES[core["cpu"]].name if core["cpu"] else f"unknown (not {self.state.cpu})",
                "emulated": {"emulator": "qemu-user", "cpu": core["cpu"], "configured_cpu": self.state.cpu,
                             "ran_with": core["ran_with"]}}

    def info(self) -> dict:
        """The board's own facts over ssh, with the emulated core and the emulation mark."""
        facts = super().info()
        return {**facts, **self.emulation_facts(facts)}

    def measure(self, bundle, runners: dict[str, Path]) -> dict:
        """SshTarget.measure, with the row's device facts marked emulated and naming the core that ran."""
        measured = super().measure(bundle, runners)
        if measured.get("device_facts"):
            measured["device_facts"].update(self.emulation_facts(measured["device_facts"]))
        return measured
