"""Writing an image to a card: device discovery, the safety rules, the writer
with read-back verification, and the flash verb."""
