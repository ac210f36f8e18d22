"""Read (and minimally edit) the partitions of a disk image without mounting.

FAT through mtools (``IMG@@OFFSET``), ext4 through debugfs (``IMG?offset=N``):
vfat cannot be mounted on these machines and nothing here needs root.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8"}


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=_ENV)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def partition_offset(image: Path, number: int) -> int:
    """Byte offset of partition ``number`` (1-based) from the image's table."""
    table = json.loads(_run(["sfdisk", "-J", str(image)]).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return int(table["partitions"][number - 1]["start"]) * sector


@dataclass(frozen=True)
class Fat:
    image: Path
    offset: int

    @property
    def spec(self) -> str:
        return f"{self.image}@@{self.offset}"

    def names(self, folder: str = "") -> list[str]:
        """File and folder names in ``folder`` (root by default)."""
        proc = _run(["mdir", "-b", "-i", self.spec, f"::/{folder}"], check=False)
        if proc.returncode != 0:
            return []
        prefix = f"::/{folder}".rstrip("/") + "/"
        out = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("::/"):
                name = line[len(prefix) :] if line.startswith(prefix) else line[3:]
                out.append(name.rstrip("/"))
        return out

    def exists(self, path: str) -> bool:
        return _run(["mdir", "-i", self.spec, f"::/{path}"], check=False).returncode == 0

    def read_bytes(self, path: str) -> bytes:
        proc = subprocess.run(["mtype", "-i", self.spec, f"::/{path}"], capture_output=True, env=_ENV)
        if proc.returncode != 0:
            raise FileNotFoundError(f"{path} on the FAT of {self.image}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode()

    def get(self, path: str, dest: Path) -> None:
        _run(["mcopy", "-n", "-o", "-i", self.spec, f"::/{path}", str(dest)])

    def write_text(self, path: str, text: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            local.write_text(text)
            _run(["mcopy", "-o", "-i", self.spec, str(local), f"::/{path}"])


@dataclass(frozen=True)
class Ext4:
    image: Path
    offset: int

    @property
    def spec(self) -> str:
        return f"{self.image}?offset={self.offset}"

    def _debugfs(self, request: str) -> subprocess.CompletedProcess[str]:
        return _run(["debugfs", "-R", request, self.spec], check=False)

    def exists(self, path: str) -> bool:
        proc = self._debugfs(f"stat {path}")
        return proc.returncode == 0 and "File not found" not in proc.stderr and "Inode:" in proc.stdout

    def read_text(self, path: str) -> str:
        if not self.exists(path):
            raise FileNotFoundError(f"{path} on the ext4 of {self.image}")
        return self._debugfs(f"cat {path}").stdout

    def readlink(self, path: str) -> str | None:
        """Target of a symlink, or None when ``path`` is missing or no symlink."""
        proc = self._debugfs(f"stat {path}")
        if "Type: symlink" not in proc.stdout:
            return None
        for line in proc.stdout.splitlines():
            if line.startswith("Fast link dest:"):
                return line.split(":", 1)[1].strip().strip('"')
        # a long target lives in a data block
        return self._debugfs(f"cat {path}").stdout or None

    def names(self, folder: str) -> list[str]:
        proc = self._debugfs(f"ls -l {folder}")
        if proc.returncode != 0 or "File not found" in proc.stderr:
            return []
        out = []
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 9 and parts[-1] not in (".", ".."):
                out.append(parts[-1])
        return out

    def stat(self, path: str) -> dict[str, str]:
        """``mode`` (octal string), ``uid``, ``gid``, ``type`` of ``path``."""
        proc = self._debugfs(f"stat {path}")
        info: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            if line.startswith("Inode:"):
                parts = line.split()
                info["type"] = parts[parts.index("Type:") + 1]
                info["mode"] = parts[parts.index("Mode:") + 1]
            elif line.startswith("User:"):
                parts = line.split()
                info["uid"] = parts[1]
                info["gid"] = parts[parts.index("Group:") + 1]
        return info
