"""Getting what a build puts on a card, verified and cached.

``catalog`` (the Raspberry Pi Imager catalog), ``download`` (resumable,
verified HTTP downloads), ``cache`` (the cache folder and its index),
``source`` (the base image: resolve, download, verify, cache, decompress) and
``artifacts`` (k3s's install script, binary and airgap images, and the Helm
charts, each checked against a pin).
"""
