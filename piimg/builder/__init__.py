"""Host side: catalog, download and cache, decompression, partition tables,
FAT editing, image customisation and flashing. Never prints, never exits."""
