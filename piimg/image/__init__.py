"""Pure image formats. No network, no devices; depends on nothing above it.

``partitions`` (MBR/GPT tables), ``fat`` (FAT32/FAT16 editing inside an image
file, no mount), ``ext4map`` (used blocks from ext4 bitmaps), ``blockmap``
(the ranges a card must receive), ``sparse`` (fast copies), ``decompress``
(streaming, into sparse files) and ``overlay`` (per-node overlays: only the
blocks that differ from the base, composed on the fly when flashing).
"""
