"""A fake libnvidia-ml.so built with gcc from fake_nvml.c: the real nvidia-ml-py bindings load it by soname and
read GPUs (utilization, memory, power, lost GPUs, MIG) from the state file named by $FAKE_NVML_STATE."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_nvml.c")
SONAME = "libnvidia-ml.so.1"


def build_and_load(directory: Path, optimize: str = "-O1") -> Path:
    """Compile the library into `directory` and load it globally, so pynvml's dlopen by soname finds it."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required to build the fake libnvidia-ml.so (Debian package gcc)"
    library = directory / SONAME
    subprocess.run([gcc, "-shared", "-fPIC", optimize, "-Wall", "-Werror", f"-Wl,-soname,{SONAME}",
                    "-o", str(library), str(SOURCE)], check=True)
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return library
