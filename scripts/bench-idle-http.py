#!/usr/bin/env python3
"""The memory idle HTTP connections hold on a node: starts one gavel node
with --http-port, opens N connections that send nothing, and reads the
node's RSS before and while they are open (within the 10 s header
deadline that closes them). Standard library only.

Usage: scripts/bench-idle-http.py GAVEL_BINARY [N] [BASE_PORT] [half-sent]

With `half-sent`, each connection sends the start of a request's headers
and never the end (the finding's 19,900 such requests held 920 MB before
the node had a cap and a header deadline).
"""

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

binary = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
base = int(sys.argv[3]) if len(sys.argv) > 3 else 7400
half_sent = len(sys.argv) > 4 and sys.argv[4] == "half-sent"
node, client, http = base, base - 400, base + 80


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
record = tempfile.mkdtemp(prefix="gavel-idle-http-")
server = subprocess.Popen(
    [binary, "server", "--port", str(node), "--client-port", str(client), "--http-port", str(http),
     "--peers", str(node), "--record-dir", record],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    wait_for_port(http, time.monotonic() + 15)
    time.sleep(0.5)
    before = rss_kib(server.pid)
    fds_before = len(os.listdir(f"/proc/{server.pid}/fd"))
    sockets, refused = [], 0
    started = time.monotonic()
    for _ in range(count):
        connection = socket.socket()
        connection.setblocking(False)
        try:
            connection.connect_ex(("127.0.0.1", http))
            sockets.append(connection)
        except OSError:
            refused += 1
            connection.close()
    if half_sent:
        time.sleep(0.5)
        for connection in sockets:
            try:
                connection.send(b"GET /auctions HTTP/1.1\r\nHost: gavel\r\nX-Slow: ")
            except OSError:
                pass
    # Let the node accept what it will, well inside the header deadline.
    time.sleep(2.0)
    during = rss_kib(server.pid)
    opened = time.monotonic() - started
    # The connections the node accepted (the rest wait in the backlog).
    held = len(os.listdir(f"/proc/{server.pid}/fd")) - fds_before
    what = "half-sent requests" if half_sent else "idle connections"
    print(f"{count} {what} ({refused} refused at connect) in {opened:.1f} s; the node holds {held}: "
          f"RSS {before / 1024:.1f} MiB before, {during / 1024:.1f} MiB with them open "
          f"(+{(during - before) / 1024:.1f} MiB, {(during - before) * 1024 / max(1, held):,.0f} bytes each held)")
    for connection in sockets:
        connection.close()
finally:
    server.terminate()
    server.wait(timeout=10)
    shutil.rmtree(record, ignore_errors=True)
