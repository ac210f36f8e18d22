"""Connecting to RouterOS: password, TLS, login (librouteros), version detection.

Reusable by ``piimg status``::

    password = router_password(spec.router)          # env var, or a prompt callback
    api = connect(spec.router, password)              # librouteros Api, logged in
    dialect = detect_version(api)                     # piimg.router.dialects.Dialect
    rows = list(api.path("routing", "bgp", "session"))
    api.close()
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from piimg.errors import ConfigError, RouterError
from piimg.router.dialects import detect_version
from piimg.spec.model import RouterSpec

__all__ = ["connect", "detect_version", "router_password"]

log = logging.getLogger(__name__)

#: API words that carry secrets; librouteros logs every word at DEBUG.
_SECRET_WORD: Final = re.compile(r"(=(?:password|tcp-md5-key|response)=)[^'\"]*")


class _MaskSecrets(logging.Filter):
    """Mask passwords and TCP-MD5 keys in librouteros' debug log of API words."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _SECRET_WORD.sub(r"\1***", record.msg)
        return True


_FILTER: Final = _MaskSecrets()


def install_log_mask() -> None:
    logger = logging.getLogger("librouteros")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def router_password(
    spec: RouterSpec,
    *,
    prompt: Callable[[str], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The RouterOS password: from ``router.password_env``, else from ``prompt`` (if given).

    Never from argv (and never logged).
    """
    env = os.environ if env is None else env
    value = env.get(spec.password_env)
    if value:
        return value
    if prompt is not None:
        value = prompt(f"RouterOS password for {spec.username}@{spec.host}")
        if value:
            return value
    raise ConfigError(
        "router.password_env",
        f"environment variable {spec.password_env} is not set",
        hint=f"export {spec.password_env}=... (or run piimg in a terminal to be asked)",
    )


def tls_context(spec: RouterSpec, *, base_dir: Path | None = None) -> ssl.SSLContext:
    """TLS for api-ssl: verified against the system CAs or ``router.ca_file``, unless ``tls_verify: false``.

    A relative ``ca_file`` is relative to ``base_dir`` (the spec's folder).
    """
    if not spec.tls_verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    cafile = None
    if spec.ca_file:
        cafile = Path(spec.ca_file).expanduser()
        if base_dir is not None and not cafile.is_absolute():
            cafile = base_dir / cafile
    try:
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("router.ca_file", f"cannot load {cafile}: {exc}") from None


def connect(spec: RouterSpec, password: str, *, timeout: float = 10.0, base_dir: Path | None = None) -> Any:
    """Log in to the router described by ``spec``; returns a logged-in librouteros ``Api``.

    Errors (unreachable, TLS, refused login) are :class:`RouterError` with a hint.
    """
    import librouteros
    from librouteros.exceptions import ConnectionClosed, FatalError, LibRouterosError, TrapError

    install_log_mask()
    wrapper: Callable[[socket.socket], socket.socket] | None = None
    if spec.tls:
        ctx = tls_context(spec, base_dir=base_dir)

        def wrapper(sock: socket.socket) -> socket.socket:
            return ctx.wrap_socket(sock, server_hostname=spec.host if ctx.check_hostname else None)

    where = f"{spec.host}:{spec.api_port}"
    try:
        return librouteros.connect(
            spec.host,
            spec.username,
            password,
            port=spec.api_port,
            timeout=timeout,
            ssl_wrapper=wrapper,
        )
    except ssl.SSLCertVerificationError as exc:
        raise RouterError(
            f"{where}: the router's TLS certificate is not trusted ({exc.verify_message})",
            hint="set router.ca_file to the router's CA (or certificate), or router.tls_verify: false for a self-signed one",
        ) from None
    except ssl.SSLError as exc:
        hint = "api-ssl needs a certificate on the router (/ip service set api-ssl certificate=...), or set router.tls: false"
        # the answer was not TLS, or the other side hung up on our ClientHello: the plain api port
        if exc.reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING") or isinstance(exc, ssl.SSLEOFError):
            hint = f"router.tls is true: is {spec.api_port} the api-ssl service (/ip service print)?"
        raise RouterError(f"{where}: TLS handshake failed ({exc.reason or exc})", hint=hint) from None
    except UnicodeEncodeError:
        raise RouterError(
            f"{where}: the password contains non-ASCII characters, which the RouterOS API login does not take",
            hint="use an ASCII password for the API user",
        ) from None
    except TrapError as exc:
        # router_password takes the variable when it is set, so an unset one means the password was typed
        typed = not os.environ.get(spec.password_env)
        hint = (f"the password typed at the prompt was refused: run again and type {spec.username}'s password, "
                "or check router.username" if typed else
                f"check ${spec.password_env} (the password of {spec.username} on the router), or router.username")
        raise RouterError(f"{where}: login as {spec.username} refused: {exc}", hint=hint) from None
    except (FatalError, ConnectionClosed) as exc:
        raise RouterError(f"{where}: the router closed the connection during login: {exc}") from None
    except LibRouterosError as exc:
        raise RouterError(f"{where}: {exc}") from None
    except ConnectionResetError as exc:
        if not spec.tls:
            raise RouterError(f"{where}: cannot connect: {exc.strerror or exc}") from None
        # The plain api service reads a TLS ClientHello as a broken sentence and
        # hangs up (or waits: see below), depending on timing.
        raise RouterError(
            f"{where}: connection reset during the TLS handshake",
            hint=f"router.tls is true: is {spec.api_port} the api-ssl service (/ip service print)?",
        ) from None
    except TimeoutError:
        # A TLS client on the plain api port (or the reverse) waits for an answer that never comes.
        hint = (f"router.tls is {'true' if spec.tls else 'false'}: is {spec.api_port} the "
                f"{'api-ssl' if spec.tls else 'api'} service (/ip service print)?")
        raise RouterError(f"{where}: timed out", hint=hint) from None
    except OSError as exc:
        hint = "enable the service: /ip service enable " + ("api-ssl" if spec.tls else "api")
        raise RouterError(f"{where}: cannot connect: {exc.strerror or exc}", hint=hint) from None
