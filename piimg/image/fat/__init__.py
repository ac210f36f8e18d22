"""Pure-Python FAT32 (and FAT16) editing inside an image file: no mount, no root.

Usage::

    with FatFS.open("base.img", offset=8 * 1024 * 1024) as fs:
        line = fs.read_file("cmdline.txt")
        fs.write_file("cmdline.txt", line.rstrip() + b" cgroup_enable=memory\n")

The details that matter (Microsoft, "FAT: General Overview of On-Disk Format",
fatgen103, 2000; Linux fs/fat; dosfstools fsck.fat):

* FAT type. FAT32 if the 16-bit FAT size in the boot sector is 0 (the rule of
  Linux and dosfstools); the valid clusters are 2 .. CountOfClusters + 1 where
  CountOfClusters = data sectors // sectors per cluster. FAT32 entries are 28
  bits, the top 4 are reserved and preserved; >= 0x0FFFFFF8 ends a chain, we
  write 0x0FFFFFFF. Every FAT copy (BPB_NumFATs) gets every change unless
  BPB_ExtFlags bit 7 disables mirroring.
* FSInfo (FAT32, sector BPB_FSInfo): FSI_Free_Count is the exact number of
  free clusters -- fsck.vfat reports "Free cluster summary wrong" otherwise --
  and FSI_Nxt_Free the most recently allocated cluster (Linux and Windows
  store that and start the next search after it; mkfs.vfat writes 2, the root
  directory). Both are rewritten on flush.
* Lower-case 8.3 names. Windows NT, mtools and Linux (``shortname=winnt``)
  store ``cmdline.txt`` as the short name ``CMDLINE TXT`` with bit 0x08 (base)
  and 0x10 (extension) of the reserved byte 12 meaning "display in lower
  case"; Linux by default instead adds a long-name entry. Lookups here are
  case-insensitive over both the long name and the short name, so either form
  is found; new names that fit 8.3 with one case per part are written the
  Windows NT/mtools way.
* Long names. VFAT entries (attribute 0x0F) precede their short entry in
  reverse order, the first one with 0x40 ORed into its sequence number; each
  holds 13 UTF-16 units (0x0000-terminated, 0xFFFF-padded) and the checksum of
  the 11-byte short name (rotate right one bit, add next byte, mod 256). An
  entry whose checksum does not match is an orphan and is ignored. Short
  aliases are BASIS~N (fatgen103 basis-name generation), unique per directory.

Why not pyfatfs: 1.1.0 imports PyFilesystem2, which needs ``pkg_resources``
(gone in setuptools >= 82); it ignores the lower-case flags, leaves FSInfo
stale, and corrupted the FAT when overwriting a multi-cluster file in place.
This package is checked against fsck.vfat and mtools (tests/test_fat*.py).
"""

from __future__ import annotations

from piimg.image.fat.fs import FatFS

__all__ = ["FatFS"]
