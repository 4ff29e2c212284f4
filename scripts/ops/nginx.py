"""deploy/nginx: no query strings in logs, timeouts, body size, TLS, HSTS, the
upstream and forwarded headers (check_nginx); and a copy that `nginx -t`
can check on this machine (nginx_testcopy).
"""

import glob
import os
import re

from ops import path, problem, read


def nginx_files():
    main = read("deploy", "nginx", "nginx.conf")
    confd = path("deploy", "nginx", "conf.d")
    sites = {fn: read("deploy", "nginx", "conf.d", fn) for fn in sorted(os.listdir(confd)) if fn.endswith(".conf")}
    return main, sites


def strip_comments(conf):
    return re.sub(r"#[^\n]*", "", conf)


def nginx_duration(value):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    if not m:
        return None
    n = int(m.group(1))
    return {"ms": n / 1000, None: n, "s": n, "m": n * 60, "h": n * 3600}[m.group(2)]


def location_block(conf, prefix):
    m = re.search(r"location\s+" + re.escape(prefix) + r"\s*\{", conf)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(conf[i], 0)
        i += 1
    return conf[m.end():i - 1]


def check_nginx():
    main, sites = nginx_files()
    all_conf = strip_comments(main + "\n" + "\n".join(sites.values()))
    formats = re.findall(r"log_format\s+(\w+)(.*?);", all_conf, re.S)
    if not formats:
        problem("nginx: no log_format (the default one logs query strings)")
    for name, body in formats:
        for bad in ("$request_uri", "$request ", "$request'", '$request"', "$args", "$query_string", "$arg_", "$http_referer"):
            if bad in body + " ":
                problem(f"nginx: log_format {name} logs {bad.strip()} (query strings carry OAuth codes)")
        if "$uri" not in body:
            problem(f"nginx: log_format {name} should log $uri")
    for m in re.finditer(r"access_log\s+([^\s;]+)(?:\s+(\w+))?", all_conf):
        if m.group(1) != "off" and m.group(2) not in {n for n, _ in formats}:
            problem(f"nginx: access_log {m.group(1)} does not use the query-free log_format")
    site = strip_comments("\n".join(sites.values()))
    status = location_block(site, "/auth/status/")
    if status is None:
        problem("nginx: no location /auth/status/ (long-poll timeout)")
    else:
        t = re.search(r"proxy_read_timeout\s+(\S+);", status)
        if not t or (nginx_duration(t.group(1)) or 0) <= 60:
            problem("nginx: /auth/status/ needs proxy_read_timeout above 60s")
    cb = location_block(site, "/auth/callback/")
    if cb is None:
        problem("nginx: no location /auth/callback/")
    for m in re.finditer(r"proxy_read_timeout\s+(\S+);", site):
        if (nginx_duration(m.group(1)) or 0) < 30:
            problem(f"nginx: proxy_read_timeout {m.group(1)} is shorter than a provider call may take")
    size = re.search(r"client_max_body_size\s+(\d+)([kKmM]?);", all_conf)
    if not size:
        problem("nginx: client_max_body_size is not set")
    else:
        n = int(size.group(1)) * {"": 1, "k": 1024, "K": 1024, "m": 1 << 20, "M": 1 << 20}[size.group(2)]
        if n > 1 << 20:
            problem("nginx: client_max_body_size above 1m")
    if "Strict-Transport-Security" not in site:
        problem("nginx: HSTS header missing")
    if not re.search(r"listen\s+80\b", site) or not re.search(r"return\s+301\s+https://", site):
        problem("nginx: no HTTP to HTTPS redirect")
    if not re.search(r"listen\s+443\s+ssl", site):
        problem("nginx: no TLS listener on 443")
    if "/etc/nginx/certs/fullchain.pem" not in site or "/etc/nginx/certs/privkey.pem" not in site:
        problem("nginx: certificates must be /etc/nginx/certs/fullchain.pem and privkey.pem")
    if not re.search(r"server\s+gateway:8000", site):
        problem("nginx: the upstream must be gateway:8000")
    for h in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host"):
        if not re.search(r"proxy_set_header\s+" + h + r"\s", site):
            problem(f"nginx: proxy_set_header {h} missing")
    metrics = location_block(site, "= /metrics")
    if metrics is None or "return 404" not in metrics:
        problem("nginx: /metrics must not be reachable from outside")


def nginx_testcopy(dest):
    """Copy of the config with paths under dest and the upstream on 127.0.0.1."""
    main, sites = nginx_files()
    os.makedirs(os.path.join(dest, "conf.d"), exist_ok=True)
    # /tmp first: dest itself is usually under /tmp.
    main = re.sub(r"(^|\s)/tmp/", lambda m: m.group(1) + dest + "/tmp/", main)
    main = main.replace("/etc/nginx/conf.d/", dest + "/conf.d/")
    os.makedirs(os.path.join(dest, "tmp"), exist_ok=True)
    with open(os.path.join(dest, "nginx.conf"), "w", encoding="utf-8") as f:
        f.write(main)
    for fn, text in sites.items():
        text = re.sub(r"server\s+gateway:", "server 127.0.0.1:", text)
        text = text.replace("/etc/nginx/certs/", dest + "/certs/")
        with open(os.path.join(dest, "conf.d", fn), "w", encoding="utf-8") as f:
            f.write(text)
    # nginx accepts an include glob that matches nothing: make sure each matches.
    for inc in re.findall(r"^\s*include\s+([^;\s]+);", main, re.M):
        if not glob.glob(inc) and not (inc == "/etc/nginx/mime.types" and os.path.exists(inc)):
            problem(f"nginx test copy: include {inc} matches no file")
