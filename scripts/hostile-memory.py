#!/usr/bin/env python3
"""Memory of a server under hostile connections (issue 22): starts the release binary on
the embedded store, reads its resident memory idle, then with N connections held open idle
(half with a partial request head, half silent) and with N requests' heads each carrying a
64 KiB header, and after they are cut off.
    python3 scripts/hostile-memory.py [N]   (default 4000; needs `cargo build --release`)"""
import os, socket, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(root, "target", "release", "lightwidget")
work = tempfile.mkdtemp()
env = {"LW_LISTEN": "127.0.0.1:18383", "LW_ADMIN_TOKEN": "memory-admin-token-0123456789",
       "LW_HEADER_TIMEOUT_SECONDS": "10", "PATH": os.environ.get("PATH", "")}
server = subprocess.Popen([binary, "serve"], cwd=work, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def rss_mib():
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

def healthy():
    s = socket.create_connection(("127.0.0.1", 18383), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    ok = s.recv(64).startswith(b"HTTP/1.1 200")
    s.close()
    return ok

try:
    for _ in range(100):
        try:
            if healthy():
                break
        except OSError:
            time.sleep(0.1)
    idle = rss_mib()
    conns = []
    for i in range(N):
        s = socket.create_connection(("127.0.0.1", 18383))
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60000)
        conns.append(s)
    time.sleep(2)
    held = rss_mib()
    served = healthy()
    time.sleep(11)  # past the header timeout: every one of them is cut off
    after = rss_mib()
    for s in conns:
        s.close()
    print(f"resident memory: idle {idle:.1f} MiB; with {N} hostile connections "
          f"{held:.1f} MiB ({(held - idle) * 1024 / N:.1f} KiB each); others served meanwhile: "
          f"{served}; after the header timeout {after:.1f} MiB")
finally:
    server.terminate()
    server.wait()
