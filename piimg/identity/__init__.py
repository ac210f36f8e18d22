"""The cluster's identity, generated on the host before any node boots.

``k3sca`` (the k3s CAs, join token hash, client certificates), ``hostkeys``
(per-node SSH host keys, known_hosts) and ``store`` (how they live in
``.piimg/`` beside secrets.yaml, mode 0600).
"""
