"""Per-node images: the boot-partition edits (payload, cmdline.txt, first-boot
format) applied to sparse copies of the base image, and build/last.json."""
