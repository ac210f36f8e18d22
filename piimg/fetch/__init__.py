"""Getting the base image: the Raspberry Pi Imager catalog, resumable verified
downloads, and the cache."""
