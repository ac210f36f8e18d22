"""Pure image formats: partition tables, FAT, ext4 bitmaps, block maps, sparse
copies, decompression. No network, no devices; depends on nothing above it."""
