"""Where a number came from: the code's commit (and whether the checkout had uncommitted code
changes) and the processor, recorded by training runs, reproduce READMEs and benchmarks alike,
because results regenerate bit for bit only on the same code and the same kind of machine
(docs/reproduce.md)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

OUTPUT_DIRS = ("results", "checkpoints")  # what runs write: changes there are not code changes


def git_state(cwd: Path, outputs=OUTPUT_DIRS) -> tuple[str | None, bool]:
    """(commit, dirty) of the checkout holding `cwd`; (None, False) outside git.

    Dirty means uncommitted changes to tracked files outside `outputs` (paths from the checkout's
    top), so that a run regenerating committed results still names a clean commit."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, False
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                    *[f":(top,exclude){d}" for d in outputs])
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def cpu_model() -> str:
    """The processor's model name ("AMD EPYC 9R14", "Intel(R) Xeon(R) Processor"): platform.processor()
    says only "x86_64" or nothing on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_kernels() -> str:
    """The instruction set torch's and MKL's CPU kernels use ("AVX512"): two machines whose processor
    names agree can still round differently when their kernels differ, and ATEN_CPU_CAPABILITY or
    MKL_ENABLE_INSTRUCTIONS change it on one machine (docs/reproduce.md uses that to emulate another)."""
    import torch

    kernels = torch.backends.cpu.get_cpu_capability()
    mkl = os.environ.get("MKL_ENABLE_INSTRUCTIONS")
    return f"{kernels}, MKL {mkl}" if mkl else kernels


def cpu_kind() -> str:
    """What decides whether a CPU computation regenerates bit for bit: the processor and its kernels,
    e.g. "Intel(R) Xeon(R) Processor (AVX512)"."""
    return f"{cpu_model()} ({cpu_kernels()})"
