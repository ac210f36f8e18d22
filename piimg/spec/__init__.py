"""The cluster spec (``piimg.yaml``): ``model`` (the typed, frozen objects),
``load`` (YAML and per-value checks), ``rules`` (every cross-field rule, the
one place to add one; env secrets read once), ``k3sflags`` and ``secrets``
(the generated secrets file)."""
