"""Documentation drift: links, generated sections, the configuration reference
and the snippets of README.md, docs/*.md and the clients' READMEs.

    python3 scripts/ops_checks.py docs   # the check: one line per problem
    python3 scripts/ops/docs.py --write  # rewrite the generated sections

- links: every relative link of those files, and every runbook_url of
  prometheus/alerts.yml (relative to the repository root), names a file that
  exists and, for a markdown file, an anchor of one of its headings (GitHub's
  slugs: lowercase, punctuation dropped, spaces to hyphens, -1, -2 for
  repeats) or of an <a id="..."> / <a name="...">. Fenced code is ignored.
- generated sections: the lines between
      <!-- BEGIN GENERATED: NAME (scripts/ops/docs.py --write) -->
      <!-- END GENERATED: NAME -->
  are exactly what --write writes there: cli (in docs/cli.md) every command's
  `gateway ... --help`; metrics (in whichever docs/*.md has its markers) the
  table of `gateway metrics catalogue --format json`.
- configuration: the tables of docs/configuration.md (variable names in
  backticks in the first cell, `<ID>` placeholders and `*` allowed) name every
  variable `gateway config reference --format json` lists, and a number's row
  gives its default and range (`1–1440`), a flag's row its default. For the
  tests of this module, $DOCS_CONFIG_REFERENCE_JSON names a file to read that
  JSON from instead of running the binary.
- snippets: ```sql blocks run in a transaction that is rolled back, on a freshly
  migrated SQLite database and, when $TEST_DATABASE_URL is set (a PostgreSQL
  URL whose user may create databases), on a freshly migrated PostgreSQL
  database created for the run and always dropped. Lines of ```sh, bash, shell
  and console blocks that run the gateway (gateway, ./target/*/gateway,
  cargo run -p gateway --, docker compose run|exec, docker run of the image)
  use subcommands and --flags that exist. A comment on the line before a fence
  (blank lines between allowed) narrows it: <!-- snippet: postgres --> (SQL
  for PostgreSQL only: not run without $TEST_DATABASE_URL), <!-- snippet:
  sqlite --> (SQL for SQLite only) or <!-- snippet: skip REASON --> (any block).

The binary is $GATEWAY_BIN, else target/debug/gateway (built when missing).
"""

import base64
import contextlib
import difflib
import functools
import glob
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse

if __name__ == "__main__":  # run as a script: ops and harness live in scripts/
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from ops import PROBLEMS, ROOT, path, problem, read  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED: {} (scripts/ops/docs.py --write) -->"
END = "<!-- END GENERATED: {} -->"
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`{]*)")
NOTE = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)")
SHELL_LANGS = {"sh", "bash", "shell", "console", "zsh"}


# ---------------------------------------------------------------- markdown


def rel(p):
    return os.path.relpath(p, ROOT)


def doc_files():
    files = ["README.md", *sorted(rel(f) for f in glob.glob(path("docs", "*.md"))),
             "clients/python/README.md", "clients/typescript/README.md"]
    return [f for f in files if os.path.isfile(path(f))]


@functools.cache
def parse(file):
    """(prose: [(line number, line)] outside fences, fences: [(line number,
    language, [(line number, line)], the snippet note before it or None)])."""
    with open(file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    prose, fences, i = [], [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        note = NOTE.match(lines[k]) if k >= 0 else None
        start, close = i, re.compile(rf"^\s*{m.group(1)[0]}{{{len(m.group(1))},}}\s*$")
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            i += 1
        body = [(n + 1, lines[n]) for n in range(start + 1, min(i, len(lines)))]
        fences.append((start + 1, m.group(2).lower(), body, note.group(1) if note else None))
        i += 1
    return prose, fences


def slug(text):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@functools.cache
def anchors(file):
    seen, out = {}, set()
    for _, line in parse(file)[0]:
        out |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
        m = HEADING.match(line)
        if m:
            base = s = slug(m.group(1))
            while s in seen:
                seen[base] += 1
                s = f"{base}-{seen[base]}"
            seen[s] = 0
            out.add(s)
    return out


# ---------------------------------------------------------------- links


def check_target(where, base_dir, target, source):
    if not target or re.match(r"[A-Za-z][\w+.-]*:", target) or target.startswith("//"):
        return
    part, _, anchor = target.partition("#")
    part = urllib.parse.unquote(part)
    dest = source if not part else os.path.normpath(os.path.join(ROOT if part.startswith("/") else base_dir,
                                                                 part.lstrip("/")))
    if not os.path.exists(dest):
        problem(f"{where}: link {target}: {rel(dest)} does not exist")
    elif anchor and dest.endswith(".md") and os.path.isfile(dest):
        found = anchors(dest)
        if urllib.parse.unquote(anchor) not in found:
            near = difflib.get_close_matches(anchor, sorted(found), 1)
            hint = f" (did you mean #{near[0]}?)" if near else ""
            problem(f"{where}: link {target}: {rel(dest)} has no heading with the anchor #{anchor}{hint}")


def check_links():
    for f in doc_files():
        full = path(f)
        for n, line in parse(full)[0]:
            line = re.sub(r"(`+).*?\1", "code", line)
            for target in [m.group(1) for m in LINK.finditer(line)] + REF_DEF.findall(line):
                check_target(f"{f}:{n}", os.path.dirname(full), target, full)
    for n, line in enumerate(read("prometheus", "alerts.yml").splitlines(), 1):
        m = re.search(r"runbook_url:\s*[\"']?([^\"'\s]+)", line)
        if m:
            check_target(f"prometheus/alerts.yml:{n}", ROOT, m.group(1), path("prometheus", "alerts.yml"))


# ---------------------------------------------------------------- the binary


@functools.cache
def gateway():
    try:
        return harness.ensure_binaries(["gateway"])[0]
    except harness.SetupError as e:
        raise SystemExit(f"docs: the gateway binary: {e}")


def run_gateway(*args, env=None):
    # A clean environment: clap's help shows [env: NAME=value] for set variables.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "LOG_LEVEL": "warn", **(env or {})}
    return subprocess.run([gateway(), *args], env=clean, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)


def parse_help(text):
    node = {"text": "\n".join(line.rstrip() for line in text.strip("\n").splitlines()),
            "subs": [], "longs": {}, "shorts": {}, "args": False, "needs_sub": False}
    section = None
    for line in text.splitlines():
        if line.startswith("Usage:"):
            node["needs_sub"] = "<COMMAND>" in line
        elif re.fullmatch(r"\S.*:", line):
            section = line[:-1].lower()
        elif section == "commands" and (m := re.match(r"^  ([\w][\w-]*)(\s|$)", line)):
            node["subs"].append(m.group(1))
        elif section == "arguments" and line.strip():
            node["args"] = True
        elif m := re.match(r"^(?:  -(\w)(?:, --([\w-]+))?|      --([\w-]+))([ =][<\[])?", line):
            takes = m.group(4) is not None
            if m.group(1):
                node["shorts"][m.group(1)] = takes
            if m.group(2) or m.group(3):
                node["longs"][m.group(2) or m.group(3)] = takes
    return node


@functools.cache
def cli_tree():
    """{command path (tuple): parsed --help}, in the order of the help texts."""
    tree = {}

    def walk(cmd):
        r = run_gateway(*cmd, "--help")
        if r.returncode != 0:
            raise SystemExit(f"docs: gateway {' '.join(cmd)} --help failed: {r.stderr.strip()}")
        tree[cmd] = parse_help(r.stdout)
        for sub in tree[cmd]["subs"]:
            if sub != "help":
                walk((*cmd, sub))

    walk(())
    return tree


# ---------------------------------------------------------------- generated sections


def cli_section():
    return "\n\n".join(f"### {' '.join(('gateway', *cmd))}\n\n```text\n{node['text']}\n```"
                       for cmd, node in cli_tree().items())


def metrics_section():
    try:
        entries = harness.catalogue(gateway())
    except harness.SetupError as e:
        raise SystemExit(f"docs: the metric catalogue: {e}")
    rows = ["| metric | type | labels | description |", "|---|---|---|---|"]
    for e in entries:
        kind = e["type"] + (f" ({e['unit']})" if e.get("unit") else "")
        labels = ", ".join(f"`{label}`" for label in e["labels"]) or "–"
        text = e.get("help", "").strip()
        if e.get("buckets"):
            text += " Buckets: " + ", ".join(format(b, "g") for b in e["buckets"]) + "."
        text = text.replace("|", "\\|")
        rows.append(f"| `{e['name']}` | {kind} | {labels} | {text} |")
    return "\n".join(rows)


def sync(file, name, content, write):
    """Checks (or with write rewrites) the generated section name of file."""
    lines = read(file).split("\n")
    begin, end = BEGIN.format(name), END.format(name)
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        problem(f"{file} needs exactly one line {begin} and, after it, one line {end}")
        return
    want = ["", *content.split("\n"), ""]
    have = lines[starts[0] + 1:ends[0]]
    if have == want:
        return
    if write:
        lines[starts[0] + 1:ends[0]] = want
        with open(path(file), "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        print(f"docs: wrote the {name} section of {file}", file=sys.stderr)
        return
    first = next((k for k, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
    problem(f"{file} is out of date: run scripts/ops/docs.py --write "
            f"(section {name} differs from line {starts[0] + 2 + first})")


def check_generated(write=False):
    if not os.path.isfile(path("docs", "cli.md")):
        problem("docs/cli.md is missing: it holds the generated command reference")
    else:
        sync("docs/cli.md", "cli", cli_section(), write)
    marked = [f for f in doc_files() if f.startswith("docs/") and BEGIN.format("metrics") in read(f)]
    if not marked:
        problem(f"no docs/*.md has the metric table's markers ({BEGIN.format('metrics')} ... {END.format('metrics')})")
    for f in marked:
        sync(f, "metrics", metrics_section(), write)


# ---------------------------------------------------------------- configuration reference


def config_reference():
    given = os.environ.get("DOCS_CONFIG_REFERENCE_JSON")
    what = given or "gateway config reference --format json"
    if given:
        with open(given, encoding="utf-8") as f:
            text = f.read()
    else:
        r = run_gateway("config", "reference", "--format", "json")
        if r.returncode != 0:
            err = (r.stderr.strip().splitlines() or [""])[0]
            problem(f"{what} failed (status {r.returncode}: {err}), so docs/configuration.md cannot be checked")
            return None
        text = r.stdout
    try:
        entries = json.loads(text)
        assert isinstance(entries, list) and all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                 for e in entries)
        return entries
    except (ValueError, AssertionError):
        problem(f"{what}: expected a JSON array of objects with a name")
        return None


def name_pattern(doc_name):
    """A documented name as a pattern: * matches anything; <X> matches a placeholder, or in a name
    without * a concrete part too (JOB_<NAME>_ENABLED covers JOB_REENCRYPT_ENABLED, <ID>_* not LOG_LEVEL)."""
    part = r"<[A-Z0-9_]+>" if "*" in doc_name else r"(?:<[A-Z0-9_]+>|[A-Z0-9]+(?:_[A-Z0-9]+)*)"
    return re.compile("".join(part if p.startswith("<") else r"[A-Z0-9_<>]+" if p == "*" else re.escape(p)
                              for p in re.split(r"(<[^>]*>|\*)", doc_name) if p))


NUM = r"\d{1,3}(?:[ ,_\u00a0\u202f]\d{3})+(?!\d)|\d+(?:\.\d+)?"


def norm(value):
    text = re.sub(r"[ ,_\u00a0\u202f]", "", str(value).strip().lower())
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


def config_rows():
    """(line, the names in the first cell, the other cells) of each table row of docs/configuration.md."""
    rows, file = [], path("docs", "configuration.md")
    if not os.path.isfile(file):
        problem("docs/configuration.md is missing: it documents the configuration variables")
        return rows
    for n, line in parse(file)[0]:
        if line.lstrip().startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
            names = [t for span in re.findall(r"`([^`]+)`", cells[0]) for t in re.split(r"[\s,/]+", span)
                     if re.fullmatch(r"[A-Z0-9_<>*]*[A-Z][A-Z0-9_<>*]*", t)]
            if names:
                rows.append((n, names, " | ".join(cells[1:])))
    return rows


def check_config():
    entries = config_reference()
    if entries is None:
        return
    rows = config_rows()
    secret = {e["name"] for e in entries if e.get("kind") == "secret"}
    for e in sorted(entries, key=lambda e: e["name"]):
        name, kind = e["name"], e.get("kind")
        if kind == "secret-file" or (name.endswith("_FILE") and name[:-5] in secret):
            continue
        found = [(("*" not in d, len(re.sub(r"<[^>]*>|\*", "", d))), n, d, rest)
                 for n, names, rest in rows for d in names if name_pattern(d).fullmatch(name)]
        if not found:
            problem(f"docs/configuration.md does not document {name} ({kind}): add a table row naming it in backticks")
            continue
        _, n, d, rest = max(found, key=lambda f: f[0])
        where = f"docs/configuration.md:{n}: {name}" + (f" (documented as `{d}`)" if d != name else "")
        if "*" in d:
            where += ", which needs a row of its own"
        if kind == "number":
            plain = re.sub(r"`", "", rest)
            numbers = {norm(x) for x in re.findall(NUM, plain)} | set(re.findall(r"\d+(?:\.\d+)?", plain))
            ranges = {(norm(a), norm(b)) for a, b in re.findall(rf"({NUM})\s*(?:–|—|-|to|\.\.=?)\s*({NUM})", plain)}
            lo, hi = e.get("min"), e.get("max")
            if e.get("default") is not None and norm(e["default"]) not in numbers:
                problem(f"{where}: the row does not give its default, {e['default']}")
            if lo is not None and hi is not None and (norm(lo), norm(hi)) not in ranges:
                problem(f"{where}: the row does not give its range, {lo}–{hi}")
            for bound, value in (("minimum", lo), ("maximum", hi)):
                if (lo is None) != (hi is None) and value is not None and norm(value) not in numbers:
                    problem(f"{where}: the row does not give its {bound}, {value}")
        elif kind == "flag" and e.get("default") is not None:
            default = str(e["default"]).lower()
            if not re.search(rf"\b{default}\b", rest, re.I):
                problem(f"{where}: the row does not give its default, {default}")


# ---------------------------------------------------------------- snippets: SQL


def fernet_key():
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def migrate(url, tmp):
    r = run_gateway("migrate", "up", env={"DATABASE_URL": url, "DATA_DIR": tmp, "ENVIRONMENT": "development",
                                          "AUTH_GATEWAY_ENCRYPTION_KEY": fernet_key()})
    if r.returncode != 0:
        problem(f"gateway migrate up on {url.split('?')[0]} failed, so no ```sql block ran: {r.stderr.strip()[-500:]}")
    return r.returncode == 0


def sqlite_statements(sql):
    buf = ""
    for part in re.split(r"(?<=;)", sql):
        buf += part
        if sqlite3.complete_statement(buf):
            yield buf
            buf = ""
    if buf.strip():
        yield buf


def run_sqlite(db, sql):
    conn, at = sqlite3.connect(db, isolation_level=None), ""
    try:
        conn.execute("PRAGMA foreign_keys = ON")  # as the gateway's connections
        conn.execute("BEGIN")
        for stmt in sqlite_statements(sql):
            at = " ".join(re.sub(r"--[^\n]*", "", stmt).split())[:60]
            conn.execute(stmt).fetchall()
        return None
    except sqlite3.Error as e:
        return f"{e} (in: {at})"
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


@contextlib.contextmanager
def signals_raise():
    """SIGTERM/SIGINT/SIGHUP as SystemExit, so that finally clauses (dropping a database) run."""
    old = {s: signal.signal(s, harness.on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run_postgres(server, blocks, tmp):
    name = f"docs_snippets_{os.getpid()}_{secrets.token_hex(4)}"
    admin = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server, "-c"]
    url = urllib.parse.urlunsplit(urllib.parse.urlsplit(server)._replace(path="/" + name))
    with signals_raise():
        r = subprocess.run([*admin, f'CREATE DATABASE "{name}"'], capture_output=True, text=True)
        if r.returncode != 0:
            problem(f"TEST_DATABASE_URL: cannot create a database: {r.stderr.strip()}")
            return
        try:
            if migrate(url, tmp):
                for where, sql in blocks:
                    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
                                       input=f"BEGIN;\n{sql}\n;\nROLLBACK;\n", capture_output=True, text=True)
                    if r.returncode != 0:
                        err = [x for x in r.stderr.splitlines() if "ERROR" in x] or r.stderr.splitlines()[-1:]
                        problem(f"{where}: the ```sql block fails on PostgreSQL: {' '.join(err).strip()}")
        finally:
            subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True)


def check_sql(blocks):
    """blocks: [(where, sql, note)]."""
    lite = [(w, s) for w, s, note in blocks if note != "postgres"]
    pg = [(w, s) for w, s, note in blocks if note != "sqlite"]
    with tempfile.TemporaryDirectory(prefix="docs-snippets-") as tmp:
        if lite and migrate(f"sqlite://{tmp}/g.db?mode=rwc", tmp):
            for where, sql in lite:
                err = run_sqlite(os.path.join(tmp, "g.db"), sql)
                if err:
                    problem(f"{where}: the ```sql block fails on SQLite: {err}")
        if pg and os.environ.get("TEST_DATABASE_URL"):
            if shutil.which("psql"):
                run_postgres(os.environ["TEST_DATABASE_URL"], pg, tmp)
            else:
                problem("TEST_DATABASE_URL is set but psql is not installed (apt-get install postgresql-client)")


# ---------------------------------------------------------------- snippets: shell


def strip_comment(line):
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def shell_commands(lang, body):
    """(line number, words) of each simple command in a shell block."""
    out, variables, i = [], {}, 0
    while i < len(body):
        n, line = body[i]
        i += 1
        if lang == "console" and not line.startswith("$ "):
            continue
        line = line[2:] if line.startswith("$ ") else line
        while line.endswith("\\") and i < len(body):
            more = body[i][1][2:] if lang == "console" and body[i][1].startswith("> ") else body[i][1]
            line, i = line[:-1] + " " + more, i + 1
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)", line)
        while heredoc and i < len(body) and body[i][1].strip() != heredoc.group(1):
            i += 1
        i += 1 if heredoc else 0
        line = re.sub(r"<([A-Za-z](?:[\w .-]*[\w.-])?)>", "PLACEHOLDER", strip_comment(line))
        try:
            lexer = shlex.shlex(re.sub(r"(?<![\w=])\d+>", ">", line), posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, ""
            tokens = list(lexer)
        except ValueError:
            continue
        words, skip = [], False
        for t in [*tokens, ";"]:
            if skip:
                skip = False
            elif re.fullmatch(r"[();<>|&]+", t) and re.search(r"[<>]", t):
                skip = True  # a redirection and its target
            elif re.fullmatch(r"[();<>|&$`]+", t):
                words = words[1:] if words[:1] == ["export"] else words
                assigns = []
                while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
                    assigns.append(words.pop(0).split("=", 1))
                if not words:  # NAME=value alone: kept for $NAME as a command (C="docker compose -f ...")
                    variables.update(assigns)
                elif re.fullmatch(r"\$\{?\w+\}?", words[0]) and words[0].strip("${}") in variables:
                    words[:1] = shlex.split(variables[words[0].strip("${}")])
                if words:
                    out.append((n, words))
                words = []
            else:
                words.append(t)
    return out


VALUE_OPTS = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory", "--ansi",
              "--progress", "-e", "--env", "-u", "--user", "-w", "--workdir", "--name", "-v", "--volume",
              "--publish", "-l", "--label", "--index", "--network", "--mount", "--platform", "--pull"}


def after_options(words):
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 1 if "=" in words[i] or words[i] not in VALUE_OPTS else 2
    return words[i:]


def gateway_args(words):
    """(how, the gateway's arguments) when words run the gateway, else None."""
    while words and words[0] in ("env", "sudo", "exec", "time"):
        words = words[1:]
    head, rest = (words[0], words[1:]) if words else ("", [])
    if head == "gateway" or re.fullmatch(r"\.?/?(\S*/)?target/\w+/gateway|/usr/local/bin/gateway", head):
        return "gateway", rest
    if head == "cargo" and "run" in rest[:2] and re.search(r"(^| )(-p ?|--package[ =]|--bin[ =])gateway( |$)",
                                                           " ".join(rest)):
        return "cargo run", rest[rest.index("--") + 1:] if "--" in rest else []
    compose = rest[1:] if head == "docker" and rest[:1] == ["compose"] else rest if head == "docker-compose" else None
    if compose is not None:
        rest = after_options(compose)
        sub, rest = (rest[0], after_options(rest[1:])) if rest else ("", [])
        if sub in ("run", "exec") and rest[:1] == ["gateway"] and "--entrypoint" not in compose:
            if sub == "run":
                return "docker compose run", rest[1:]
            if rest[1:2] == ["gateway"]:
                return "docker compose exec", rest[2:]
    if head == "docker" and rest[:1] == ["run"] and "--entrypoint" not in rest:
        rest = after_options(rest[1:])
        if rest and re.fullmatch(r"(\S+/)?mcp-auth-gateway(:\S+)?", rest[0]):
            return "docker run", rest[1:]
    return None


def check_invocation(where, how, args):
    tree, cmd, i, positional = cli_tree(), (), 0, False
    if how == "docker compose run" and args[:1] == ["gateway"]:
        problem(f"{where}: `docker compose run … gateway gateway …` runs `gateway gateway …` (the image's "
                "ENTRYPOINT is already gateway): drop the second gateway")
        return
    while i < len(args):
        a, node, name = args[i], tree[cmd], " ".join(("gateway", *cmd))
        if a == "--":
            break
        if re.match(r"--?[A-Za-z]", a):
            long = a.startswith("--")
            flag = a[2:].split("=", 1)[0] if long else a[1:2]
            known = node["longs"] if long else node["shorts"]
            if flag not in known:
                near = difflib.get_close_matches(flag, sorted(known), 1)
                hint = f" (did you mean {'--' if long else '-'}{near[0]}?)" if near else ""
                problem(f"{where}: `{name}` has no option {'--' if long else '-'}{flag}{hint}")
            elif known[flag] and "=" not in a and (long or len(a) == 2):
                i += 1
        elif node["subs"] and not positional:
            if a == "help":
                return
            if a in node["subs"]:
                cmd, i = (*cmd, a), i + 1
                continue
            if not node["args"]:
                problem(f"{where}: `{name}` has no subcommand {a} (it has: {', '.join(node['subs'])})")
                return
            positional = True
        else:
            positional = True
        i += 1
    if tree[cmd]["needs_sub"]:
        problem(f"{where}: `{' '.join(('gateway', *cmd))}` needs a subcommand ({', '.join(tree[cmd]['subs'])})")


def check_snippets():
    sql = []
    for f in doc_files():
        if f.startswith("clients/"):
            continue
        for n, lang, body, note in parse(path(f))[1]:
            where = f"{f}:{n}"
            kind, _, reason = (note or "").partition(" ")
            if note is not None and kind not in ("skip", "postgres", "sqlite"):
                problem(f"{where}: unknown snippet note {note!r} (skip REASON, postgres or sqlite)")
            elif kind == "skip" and not reason.strip():
                problem(f"{where}: <!-- snippet: skip --> needs a reason")
            if kind == "skip":
                continue
            if lang == "sql":
                sql.append((where, "\n".join(line for _, line in body), kind or None))
            elif lang in SHELL_LANGS:
                for line_no, words in shell_commands(lang, body):
                    found = gateway_args(words)
                    if found:
                        check_invocation(f"{f}:{line_no}", *found)
    check_sql(sql)


def check_docs(*args):
    """The check `docs`; with --write, only rewrites the generated sections."""
    if args not in ((), ("--write",)):
        raise SystemExit("usage: docs [--write]")
    if args:
        check_generated(write=True)
        return
    check_links()
    check_generated()
    check_config()
    check_snippets()


if __name__ == "__main__":
    check_docs(*sys.argv[1:])
    for p in PROBLEMS:
        print(p)
    sys.exit(1 if PROBLEMS else 0)
