"""Run a subprocess whose wall clock is off by N seconds, without touching the code it runs.

Token expiry is decided on wall clocks (``exp`` claims, ``access_expires_at``), and
machines disagree about the time. Patching ``time.time`` in the project's code would test
the patch, so the offset is injected from outside with libfaketime (Debian package
``faketime``): ``LD_PRELOAD`` makes ``time.time()``, ``datetime.now()`` and everything
else on ``CLOCK_REALTIME`` report the shifted time, while ``CLOCK_MONOTONIC`` stays real
(``FAKETIME_DONT_FAKE_MONOTONIC=1``), as on a machine whose clock is merely wrong.

Bookworm's libfaketime 0.9.10 has a bug (wolfcw/libfaketime#426, fixed in 0.9.11) that
makes Python >= 3.11's ``time.sleep`` fail with EINVAL when monotonic time is not faked:
it "converts" the absolute monotonic deadline of ``clock_nanosleep`` as if it were wall
time. Faking monotonic time instead hangs every ``Event.wait``/``Lock.acquire(timeout=)``
(glibc's ``sem_clockwait`` is not intercepted). So a ten-line shim, compiled here with gcc
once per machine, goes first in ``LD_PRELOAD`` and sends every ``clock_nanosleep`` on a
clock other than ``CLOCK_REALTIME`` straight to the kernel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

LIBFAKETIME_CANDIDATES = (
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/faketime/libfaketime.so.1"),
    Path("/usr/local/lib/faketime/libfaketime.so.1"),
)
APT_INSTALL = "apt-get install -y --no-install-recommends faketime"

_SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem)
{
  static clock_nanosleep_fn next = NULL;
  if (clock_id != CLOCK_REALTIME) {
    long rc = syscall(SYS_clock_nanosleep, clock_id, flags, req, rem);
    return rc == -1 ? errno : 0;
  }
  if (next == NULL) {
    next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    if (next == NULL) return ENOSYS;
  }
  return next(clock_id, flags, req, rem);
}
"""


def libfaketime_path() -> Path | None:
    """libfaketime.so.1 as installed by Debian's ``faketime`` package (or a local build)."""
    override = os.environ.get("AAC_TEST_LIBFAKETIME")
    candidates = (Path(override),) if override else LIBFAKETIME_CANDIDATES
    return next((path for path in candidates if path.is_file()), None)


def _shim_path() -> Path:
    digest = hashlib.sha256(_SHIM_SOURCE.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"aac-clock-offset-{os.geteuid()}" / f"monotonic_sleep_{digest}.so"


def _trusted(path: Path) -> bool:
    """Ours and not writable by others: an LD_PRELOAD library runs inside every faked process."""
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def build_shim() -> Path:
    """Compile the clock_nanosleep shim once (keyed by its source) and return its path."""
    target = _shim_path()
    if _trusted(target) and _trusted(target.parent):
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc) to build the clock_nanosleep shim for libfaketime")
    target.parent.mkdir(mode=0o755, exist_ok=True)
    if not _trusted(target.parent):
        raise RuntimeError(f"{target.parent} is not owned by this user or is writable by others")
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "shim.c"
        source.write_text(_SHIM_SOURCE)
        built = Path(work) / "shim.so"
        result = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(built), str(source), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"compiling the clock_nanosleep shim failed:\n{result.stderr}")
        built.chmod(0o755)
        os.replace(built, target)  # atomic: parallel test processes never load a half-written file
    return target


def faketime_unavailable_reason() -> str | None:
    """Why clock offsets cannot be injected here, or None when they can."""
    if os.uname().sysname != "Linux":
        return "clock offsets need Linux (LD_PRELOAD of libfaketime)"
    if libfaketime_path() is None:
        return f"libfaketime is not installed (CI: {APT_INSTALL})"
    try:
        build_shim()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return f"cannot build the clock_nanosleep shim: {exc}"
    return None


def clock_offset_env(seconds: float, *, fake_file_times: bool = True) -> dict[str, str]:
    """Environment variables that make a subprocess's wall clock run ``seconds`` ahead (or behind).

    Add them to the subprocess's environment; its children inherit them. Monotonic time
    stays real. ``fake_file_times=False`` leaves ``stat()`` times alone (libfaketime shifts
    them by default, so files look as old to the faked process as to everyone else).
    Raises RuntimeError with the reason when libfaketime cannot be used.
    """
    reason = faketime_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    preload = [str(build_shim()), str(libfaketime_path())]
    inherited = os.environ.get("LD_PRELOAD")
    if inherited:
        preload.append(inherited)
    env = {
        "LD_PRELOAD": ":".join(preload),
        "FAKETIME": f"{seconds:+.6f}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "DONT_FAKE_MONOTONIC": "1",  # the name libfaketime < 0.9.9 reads
    }
    if not fake_file_times:
        env["NO_FAKE_STAT"] = "1"
    return env


def require_faketime() -> None:
    """Skip the calling test when libfaketime is missing, but fail it in CI (which installs it)."""
    import pytest

    reason = faketime_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} [CI=true, so clock-offset tests must run]")
    pytest.skip(reason)
