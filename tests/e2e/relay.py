"""qemu ``guestfwd=...-cmd:`` helper: join stdin/stdout to a TCP server on loopback.

qemu starts one of these per guest connection; the guest's bytes arrive on
stdin and whatever is written to stdout goes back to the guest. Only
127.0.0.1 is allowed as the target.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    if host != "127.0.0.1":
        print(f"relay: refusing non-loopback target {host}", file=sys.stderr)
        return 2
    sock = socket.create_connection((host, port), timeout=30)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel.register(stdin, selectors.EVENT_READ, "guest")
    sel.register(sock, selectors.EVENT_READ, "server")
    open_ends = 2
    while open_ends:
        for key, _ in sel.select():
            if key.data == "guest":
                data = os.read(stdin, 65536)
                if not data:
                    sel.unregister(stdin)
                    sock.shutdown(socket.SHUT_WR)
                    open_ends -= 1
                else:
                    sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    sel.unregister(sock)
                    open_ends -= 1
                    # the server is done: the guest sees EOF when we exit
                    return 0
                view = memoryview(data)
                while view:
                    n = os.write(stdout, view)
                    view = view[n:]
    return 0


if __name__ == "__main__":
    sys.exit(main())
