"""The cluster spec (``piimg.yaml``): model, loading, cross-field rules and
the generated secrets beside it."""
