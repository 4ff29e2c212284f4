"""The Dockerfile: multi-stage, pinned images, a --locked release build, a
non-root final stage with a HEALTHCHECK and an exec-form entrypoint; and
.dockerignore.
"""

import json
import re

from ops import image_tag_problem, path, problem, read


def check_dockerfile():
    from dockerfile_parse import DockerfileParser

    df = DockerfileParser(path=path("Dockerfile"))
    instrs = df.structure
    stages, current = [], None
    for ins in instrs:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            image = parts[0]
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            current = {"image": image, "alias": alias, "ins": []}
            stages.append(current)
        elif current is not None:
            current["ins"].append(ins)
    if len(stages) < 2:
        problem("Dockerfile: must be multi-stage (a builder and a runtime stage)")
        return
    aliases = set()
    for st in stages:
        if st["image"] not in aliases and st["image"] != "scratch":
            p = image_tag_problem(st["image"])
            if p:
                problem(f"Dockerfile: {p}")
        if st["alias"]:
            aliases.add(st["alias"])
    if not stages[0]["image"].startswith("rust:"):
        problem("Dockerfile: the builder stage must use a rust image")
    if not stages[-1]["image"].startswith("debian:bookworm-slim"):
        problem("Dockerfile: the runtime stage must be debian:bookworm-slim")
    builds = [i["value"] for st in stages for i in st["ins"] if i["instruction"] == "RUN" and "cargo build" in i["value"]]
    if not builds:
        problem("Dockerfile: no RUN cargo build")
    for b in builds:
        for flag in ("--locked", "--release", "-p gateway"):
            if flag not in b:
                problem(f"Dockerfile: cargo build lacks {flag}")
    final = stages[-1]["ins"]
    kinds = [i["instruction"] for i in final]
    users = [i["value"].strip() for i in final if i["instruction"] == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the final stage must switch to a non-root USER")
    hc = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
    if not hc or hc[-1].strip().upper() == "NONE":
        problem("Dockerfile: the final stage needs a HEALTHCHECK")
    elif "/health" not in hc[-1]:
        problem("Dockerfile: the HEALTHCHECK must probe /health")
    else:
        tool = re.search(r"CMD\s+(\S+)", hc[-1])
        runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
        if tool and tool.group(1) in ("curl", "wget", "busybox") and tool.group(1) not in runs:
            problem(f"Dockerfile: the HEALTHCHECK uses {tool.group(1)}, which the final stage does not install")
    ep = [i["value"] for i in final if i["instruction"] == "ENTRYPOINT"]
    cmd = [i["value"] for i in final if i["instruction"] == "CMD"]
    if not ep or json.loads(ep[-1]) != ["gateway"]:
        problem('Dockerfile: ENTRYPOINT must be ["gateway"] (exec form)')
    if not cmd or json.loads(cmd[-1]) != ["serve"]:
        problem('Dockerfile: CMD must be ["serve"] (exec form)')
    exposes = " ".join(i["value"] for i in final if i["instruction"] == "EXPOSE").split()
    if "8000" not in exposes:
        problem("Dockerfile: EXPOSE 8000 is missing")
    if "USER" in kinds and "COPY" in kinds and kinds.index("USER") < max(i for i, k in enumerate(kinds) if k == "COPY"):
        pass  # copying after USER is allowed (files stay root-owned)
    for st in stages:
        for i in st["ins"]:
            v = i["value"]
            if i["instruction"] == "ADD" and re.search(r"https?://", v):
                problem("Dockerfile: ADD of a URL (use a checked download)")
            if i["instruction"] == "RUN" and "apt-get install" in v:
                if "--no-install-recommends" not in v:
                    problem("Dockerfile: apt-get install without --no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in v:
                    problem("Dockerfile: apt lists are not removed in the same RUN")
                if "-y" not in v.split():
                    problem("Dockerfile: apt-get install without -y")
            if i["instruction"] == "COPY":
                m = re.search(r"--from=(\S+)", v)
                if m and m.group(1) not in aliases:
                    problem(f"Dockerfile: COPY --from={m.group(1)} names no earlier stage")
            if i["instruction"] == "RUN" and re.search(r"\bsudo\b", v):
                problem("Dockerfile: sudo in RUN")
    final_runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
    if "ca-certificates" not in final_runs:
        problem("Dockerfile: the runtime stage must install ca-certificates")
    ignore = read(".dockerignore").split()
    for need in ("target/", "data/", ".git/", ".env"):
        if need not in ignore and need.rstrip("/") not in ignore:
            problem(f".dockerignore: {need} is not excluded")
