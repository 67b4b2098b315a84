"""Checks the portal's Dockerfile with Docker's own parser (PyPI `dockerfile`).

Usage: dockerfile_check.py DOCKERFILE DOCKERIGNORE
Prints every problem and exits 1 if there is one, 0 if none; exits 3 when the
parser is not installed. Run by portal/server/tests/dockerfile.rs.
"""

import posixpath
import re
import sys

try:
    import dockerfile
except ImportError:
    print(
        "the Python package `dockerfile` is missing from this interpreter "
        f"({sys.executable}); install the pinned one with: "
        ".venv/bin/pip install -r portal/sandbox/requirements.lock",
        file=sys.stderr,
    )
    sys.exit(3)

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|ACCESS_KEY|SESSION_KEY", re.I)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_FILE = re.compile(r"(^|/)(\.aws|\.env|credentials|id_rsa|[^/]*\.pem|[^/]*\.key)(/|$)")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def env_pairs(command):
    """ENV A=1 B=2 and the legacy ENV A 1 both parse to (name, value) pairs."""
    values = list(command.value)
    return list(zip(values[0::2], values[1::2]))


def main(path, ignore_path):
    text = open(path, encoding="utf-8").read()
    commands = dockerfile.parse_string(text)
    problems = []

    global_args = {}
    stages = []  # (name, base, [commands])
    for command in commands:
        if command.cmd == "FROM":
            value = command.value
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            stages.append((name, value[0], []))
        elif not stages:
            if command.cmd == "ARG":
                key, _, default = command.value[0].partition("=")
                global_args[key] = default
        else:
            stages[-1][2].append(command)

    names = {name for name, _, _ in stages if name}
    if len(stages) < 2:
        problems.append("not multi-stage: the image must not carry the toolchain")

    def resolve(text):
        # ARGs may name ARGs (RUST_IMAGE names RUST_VERSION): until nothing changes.
        for _ in range(len(global_args) + 1):
            before = text
            for key, default in global_args.items():
                text = text.replace("${" + key + "}", default).replace("$" + key, default)
            if text == before:
                break
        return text

    # Every image named is pinned to a version (and, if to a digest, to a
    # well-formed one); stage names and ARGs resolve.
    for name, base, _ in stages:
        resolved = resolve(base)
        if resolved in names or resolved == "scratch":
            continue
        image, at, digest = resolved.partition("@")
        if at and not DIGEST.fullmatch(digest):
            problems.append(
                f"FROM {base} ({resolved}): the digest must be sha256: and 64 hexadecimal digits"
            )
        if ":" not in image.split("/")[-1] or image.endswith(":latest"):
            problems.append(f"FROM {base}: pin the image to a version tag")

    final_name, final_base, final = stages[-1]
    final_base = resolve(final_base)
    if not ("distroless/static" in final_base or final_base == "scratch"):
        problems.append(f"final stage is based on {final_base}, not scratch or distroless static")

    def last(cmd):
        found = [c for c in final if c.cmd == cmd]
        return found[-1] if found else None

    env = {}
    for command in final:
        if command.cmd == "ENV":
            env.update(env_pairs(command))

    user = last("USER")
    if user is None:
        problems.append("final stage has no USER: it would run as root")
    else:
        who = user.value[0].split(":")[0]
        if who in ("root", "0"):
            problems.append(f"final stage runs as {user.value[0]}")

    entrypoint = last("ENTRYPOINT")
    binary = None
    if entrypoint is None or not entrypoint.json:
        problems.append("ENTRYPOINT must be the portal binary in exec form")
    else:
        binary = entrypoint.value[0]
        if posixpath.basename(binary) != "cloudpulse" or len(entrypoint.value) != 1:
            problems.append(f"ENTRYPOINT is {list(entrypoint.value)}, not the cloudpulse binary")
        copied = [
            c for c in final
            if c.cmd == "COPY" and any(
                posixpath.basename(src) == "cloudpulse" for src in c.value[:-1]
            ) and (c.value[-1].rstrip("/") == posixpath.dirname(binary) or c.value[-1] == binary)
        ]
        if not copied:
            problems.append(f"nothing in the final stage copies the portal to {binary}")

    health = last("HEALTHCHECK")
    if health is None or health.value[0].upper() == "NONE":
        problems.append("no HEALTHCHECK in the final stage")
    elif not health.json or binary is None or list(health.value[1:2]) != [binary]:
        problems.append(
            f"HEALTHCHECK {list(health.value)}: run the portal's own binary in exec form "
            "(the image has no shell or curl)"
        )
    elif "healthcheck" not in health.value:
        problems.append("HEALTHCHECK does not run `cloudpulse healthcheck`")

    database = env.get("CLOUDPULSE_DATABASE")
    volumes = [v.rstrip("/") for c in final if c.cmd == "VOLUME" for v in c.value]
    if not database:
        problems.append("CLOUDPULSE_DATABASE is not set in the final stage")
    elif posixpath.dirname(database) not in volumes:
        problems.append(f"the database {database} is not on a VOLUME (volumes: {volumes})")

    bind = env.get("CLOUDPULSE_BIND", "127.0.0.1:3000")
    port = bind.rsplit(":", 1)[-1]
    exposed = [p.split("/")[0] for c in final if c.cmd == "EXPOSE" for p in c.value]
    if port not in exposed:
        problems.append(f"the portal listens on {port} but EXPOSE lists {exposed}")
    if bind.startswith("127.") or bind.startswith("[::1]"):
        problems.append(f"CLOUDPULSE_BIND={bind} is unreachable from outside the container")

    if "CLOUDPULSE_SITE_ROOT" not in env:
        problems.append("CLOUDPULSE_SITE_ROOT is not set: the pages would load no bundle")

    # No secrets: none named in ARG or ENV, no key ids, no secret files copied.
    for command in commands:
        if command.cmd in ("ARG", "ENV"):
            keys = (
                [v.partition("=")[0] for v in command.value]
                if command.cmd == "ARG"
                else [k for k, _ in env_pairs(command)]
            )
            for key in keys:
                if SECRET_NAME.search(key):
                    problems.append(f"line {command.start_line}: {command.cmd} {key} bakes a secret into the image")
        if command.cmd in ("COPY", "ADD"):
            for src in command.value[:-1]:
                if SECRET_FILE.search(src):
                    problems.append(f"line {command.start_line}: {command.cmd} {src} copies a secret")
    if AWS_KEY_ID.search(text):
        problems.append("an AWS access key id appears in the Dockerfile")

    # A static build of both binaries, for the musl target.
    runs = " ".join(" ".join(c.value) for _, _, cs in stages for c in cs if c.cmd == "RUN")
    for needle in ("--target x86_64-unknown-linux-musl", "-p cloudpulse-server", "-p cloudpulse-instance"):
        if needle not in runs:
            problems.append(f"no RUN builds with `{needle}`")

    # The final stage can take binaries built on the host instead.
    if "local" not in names:
        problems.append("no `local` stage that packages binaries from dist/")

    ignored = {
        line.strip().rstrip("/")
        for line in open(ignore_path, encoding="utf-8")
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", "target", ".venv", "node_modules", "**/*.db"):
        if needed not in ignored:
            problems.append(f".dockerignore does not exclude {needed}")

    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {len(stages)} stages, final on {final_base} as {user.value[0]}, entrypoint {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
