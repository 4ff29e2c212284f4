""".env.example documents every configuration variable (as core/src/config
declares and reads them) and every compose interpolation, and holds no real
secret.
"""

import os
import re

from ops import SECRET_VARS, path, problem, read

# The configuration code (the gateway-core crate): `pub mod vars { ... }` in
# mod.rs, the providers' variables, and the workers' schedules.
CONFIG = ("core", "src", "config")


def check_env():
    text = read(".env.example")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    config = read(*CONFIG, "mod.rs")
    vars_block = re.search(r"pub mod vars \{(.*?)\n\}", config, re.S)
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', vars_block.group(1))) if vars_block else set()
    if os.path.exists(path(*CONFIG, "providers.rs")):
        names |= set(re.findall(r'pub const \w+: &str = "([A-Z][A-Z0-9_]+)"', read(*CONFIG, "providers.rs")))
    # Variables read by name anywhere in the configuration code, and the jobs' switches.
    for name in sorted(os.listdir(path(*CONFIG))):
        if name.endswith(".rs"):
            code = read(*CONFIG, name)
            names |= set(re.findall(r'src\.(?:get|get_or|flag|number|secret|parse_or)\(\s*"([A-Z][A-Z0-9_]+)"', code))
            for job in re.findall(r'\("([A-Z_]+)", "[^"]*\*[^"]*"\)', code):
                names |= {f"JOB_{job}_SCHEDULE", f"JOB_{job}_ENABLED"}
    # The design document's and the brief's list (covers what the code may not declare yet).
    names |= {
        "DATABASE_URL", "AUTH_GATEWAY_ENCRYPTION_KEY", "AUTH_GATEWAY_ENCRYPTION_KEY_SALT",
        "AUTH_GATEWAY_ROTATION_KEYS", "AUTH_GATEWAY_API_KEY", "HOST", "PORT", "PUBLIC_BASE_URL",
        "ENVIRONMENT", "SESSION_EXPIRY_MINUTES", "TOKEN_REFRESH_BUFFER_SECONDS", "LOG_LEVEL",
        "LOG_FORMAT", "DATA_DIR", "METRICS_ADDR", "METRICS_BEARER_TOKEN", "MICROSOFT_TENANT",
    }
    for p in ("GOOGLE", "MICROSOFT", "META"):
        names |= {f"{p}_CLIENT_ID", f"{p}_CLIENT_SECRET", f"{p}_REDIRECT_URI"}
    secrets = {n for n in names if SECRET_VARS.match(n)}
    names |= {n + "_FILE" for n in secrets}
    for n in sorted(names - documented):
        problem(f".env.example does not document {n}")
    for compose in ("docker-compose.yml", "docker-compose.prod.yml"):
        for n in sorted(set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", read(compose)))):
            if n not in documented:
                problem(f".env.example does not document {n}, which {compose} interpolates")
    for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.M):
        name, value = m.group(1), m.group(2).strip()
        if (SECRET_VARS.match(name) or name.endswith("_PASSWORD")) and value and not value.startswith("change-me"):
            problem(f".env.example: {name} must hold a change-me placeholder, not a value")
        if re.fullmatch(r"[A-Za-z0-9_-]{43}=", value) or re.fullmatch(r"[A-Za-z0-9]{64}", value):
            problem(f".env.example: {name} looks like a real key")
        if " #" in value:
            problem(f".env.example: {name} has an inline comment (parsers disagree on those)")
