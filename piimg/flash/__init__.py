"""Writing an image to a card.

``devices`` (what a target is: discovery on Linux and macOS), ``safety`` (the
refusal rules), ``write`` (mapped ranges, first MiB last, read-back
verification), ``verb`` (one flash: check, ask, unmount, write, verify,
eject), ``station`` (``piimg flash --all``: one card after another) and
``record`` (``build/flashed.json``: which node went onto a card).
"""
