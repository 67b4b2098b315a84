# Starts moto's server and ties its life to the process that started it.
#
# CloudPulse keeps this process's standard input open for as long as it wants
# moto to run. When CloudPulse exits, however it exits (Ctrl-C, a crash,
# kill -9), the pipe closes, the read below returns, and moto goes with it, so
# no stray server is left holding a port.
import os
import sys
import threading


def _exit_when_parent_is_gone():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


try:
    from moto.server import main
except ImportError as error:
    print(f"this Python has no moto[server] ({error}); run `cargo xtask setup`", flush=True)
    sys.exit(3)

threading.Thread(target=_exit_when_parent_is_gone, daemon=True).start()
sys.exit(main(sys.argv[1:]))
