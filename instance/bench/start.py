# Starts a service, measures the time from spawn to its first 200 on /health,
# and leaves it running. Prints "PID MILLISECONDS".
#
# Polling from inside the process that spawned the service, with raw sockets
# every half millisecond, keeps the measuring tool's own start-up (a curl per
# poll, or a Python interpreter started after the service) out of the figure.
import os
import socket
import subprocess
import sys
import time

port = int(os.environ["PORT"])
log = open(sys.argv[1], "wb")
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
while True:
    if child.poll() is not None:
        sys.exit(f"the service exited with {child.returncode} before answering")
    if time.perf_counter() - started > 30:
        sys.exit("no 200 on /health within 30 s")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            if b" 200 " in conn.recv(64):
                break
    except OSError:
        pass
    time.sleep(0.0005)
print(child.pid, round((time.perf_counter() - started) * 1000, 1), flush=True)
