"""The boot sector (BIOS parameter block) of a FAT16 or FAT32 file system."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from piimg.errors import ImageError

FSINFO_LEAD_SIG: Final = 0x41615252
FSINFO_STRUC_SIG: Final = 0x61417272
FSINFO_TRAIL_SIG: Final = 0xAA550000


@dataclass(frozen=True)
class Geometry:
    """Where everything lives, in bytes relative to the start of the file system."""

    bytes_per_sector: int
    sectors_per_cluster: int
    reserved_sectors: int
    num_fats: int
    root_entries: int  # FAT16: fixed root directory slots; FAT32: 0
    total_sectors: int
    fat_sectors: int
    fat_bits: int  # 16 or 32
    root_cluster: int  # FAT32 only; 0 on FAT16
    fsinfo_sector: int  # 0: none
    active_fat: int | None  # None: all FATs are mirrored
    cluster_count: int

    @property
    def cluster_size(self) -> int:
        return self.bytes_per_sector * self.sectors_per_cluster

    @property
    def size(self) -> int:
        return self.total_sectors * self.bytes_per_sector

    @property
    def fat_size(self) -> int:
        return self.fat_sectors * self.bytes_per_sector

    def fat_offset(self, index: int) -> int:
        return (self.reserved_sectors + index * self.fat_sectors) * self.bytes_per_sector

    @property
    def root_dir_offset(self) -> int:
        return self.fat_offset(self.num_fats)

    @property
    def root_dir_size(self) -> int:
        sectors = (self.root_entries * 32 + self.bytes_per_sector - 1) // self.bytes_per_sector
        return sectors * self.bytes_per_sector

    @property
    def data_offset(self) -> int:
        return self.root_dir_offset + self.root_dir_size

    @property
    def max_cluster(self) -> int:
        """Highest valid cluster number (clusters are numbered from 2)."""
        return self.cluster_count + 1

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.cluster_size


def parse_boot_sector(sector: bytes, *, where: str) -> Geometry:
    """Check and decode a boot sector; ``where`` names the file and offset for errors."""

    def bad(why: str) -> ImageError:
        return ImageError(f"{where}: not a FAT file system ({why})")

    if len(sector) < 512:
        raise bad("shorter than one sector")
    if sector[510:512] != b"\x55\xaa":
        raise bad("no 55 AA boot signature")
    if sector[0] not in (0xEB, 0xE9):
        raise bad("no jump instruction at byte 0")
    bps, spc, rsvd, nfats, root_ent, tot16, _media, fatsz16 = struct.unpack_from("<HBHBHHBH", sector, 11)
    (tot32,) = struct.unpack_from("<I", sector, 32)
    if bps not in (512, 1024, 2048, 4096):
        raise bad(f"{bps} bytes per sector")
    if spc == 0 or spc & (spc - 1) or spc > 128:
        raise bad(f"{spc} sectors per cluster")
    if bps * spc > 65536:
        raise bad(f"cluster size {bps * spc}")
    if rsvd == 0 or nfats == 0:
        raise bad("no reserved sectors or no FAT")
    total = tot16 or tot32
    # dosfstools and Linux call a volume FAT32 when the 16-bit FAT size is 0;
    # fatgen103 decides by cluster count. Both agree on sane volumes, and
    # mkfs.vfat -F 32 can make small FAT32 volumes that only the first rule accepts.
    if fatsz16 == 0:
        fat_bits = 32
        fatsz, ext_flags, fs_ver, root_clus, fsinfo = struct.unpack_from("<IHHIH", sector, 36)
        if root_ent != 0:
            raise bad("FAT32 with a fixed root directory")
        if fs_ver != 0:
            raise bad(f"unsupported FAT32 version {fs_ver:#06x}")
        active = None if not ext_flags & 0x80 else ext_flags & 0x0F
        if fsinfo in (0, 0xFFFF):
            fsinfo = 0
    else:
        fat_bits, fatsz, root_clus, fsinfo, active = 16, fatsz16, 0, 0, None
    if fatsz == 0 or total == 0:
        raise bad("zero-sized FAT or volume")
    root_sectors = (root_ent * 32 + bps - 1) // bps
    data_sectors = total - (rsvd + nfats * fatsz + root_sectors)
    if data_sectors <= 0:
        raise bad("no room for data")
    clusters = data_sectors // spc
    if fat_bits == 16 and clusters < 4085:
        raise ImageError(f"{where}: FAT12 file systems are not supported")
    if fat_bits == 16 and clusters >= 65525:
        raise bad(f"FAT16 with {clusters} clusters")
    entries_in_fat = fatsz * bps * 8 // fat_bits
    if entries_in_fat < clusters + 2:
        raise bad(f"FAT holds {entries_in_fat} entries for {clusters} clusters")
    if active is not None and active >= nfats:
        raise bad(f"active FAT {active} of {nfats}")
    if fat_bits == 32 and not 2 <= root_clus <= clusters + 1:
        raise bad(f"root cluster {root_clus} out of range")
    if fsinfo and fsinfo >= rsvd:
        fsinfo = 0
    return Geometry(
        bytes_per_sector=bps,
        sectors_per_cluster=spc,
        reserved_sectors=rsvd,
        num_fats=nfats,
        root_entries=root_ent,
        total_sectors=total,
        fat_sectors=fatsz,
        fat_bits=fat_bits,
        root_cluster=root_clus,
        fsinfo_sector=fsinfo,
        active_fat=active,
        cluster_count=clusters,
    )
