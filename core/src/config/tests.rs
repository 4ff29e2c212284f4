use std::io::Write;

use secrecy::ExposeSecret;

use super::*;

fn parse(pairs: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
    Settings::from_source(&Source::from_pairs(pairs.iter().copied()))
}

fn variables(errs: &ConfigErrors) -> Vec<&str> {
    errs.0.iter().map(|e| e.variable.as_str()).collect()
}

const FERNET_KEY: &str = "lcjFkPi595NBMPh0JFyB_aSReQXNXON9Q3Zviy2FjC8=";

#[test]
fn nothing_set_means_development_on_embedded_sqlite() {
    let settings = parse(&[]).unwrap();
    assert_eq!(settings.environment, Environment::Development);
    assert_eq!(settings.database.backend, Backend::Sqlite);
    assert!(settings.database.embedded_default);
    assert_eq!(settings.database.url.expose_secret(), "sqlite://./data/gateway.db?mode=rwc");
    assert!(settings.keys.primary.is_none());
    assert!(settings.api_key.is_none());
    assert_eq!(settings.http.port, 8000);
    assert_eq!(settings.http.public_base_url, None);
    assert_eq!(settings.http.public_url("127.0.0.1:8000".parse().unwrap()).unwrap().as_str(), "http://127.0.0.1:8000/");
    assert_eq!(settings.session_expiry, Duration::from_secs(15 * 60));
    assert_eq!(settings.token_refresh_buffer, Duration::from_secs(300));
    assert_eq!(settings.log.format, LogFormat::Text);
}

#[test]
fn production_without_keys_or_postgres_names_every_missing_piece() {
    let errs = parse(&[("ENVIRONMENT", "production")]).unwrap_err();
    let vars = variables(&errs);
    for expected in ["DATABASE_URL", "AUTH_GATEWAY_ENCRYPTION_KEY", "AUTH_GATEWAY_API_KEY", "PUBLIC_BASE_URL"] {
        assert!(vars.contains(&expected), "{expected} missing from {vars:?}");
    }
    let text = errs.to_string();
    assert!(text.contains("gateway keys generate"), "{text}");
    assert!(text.contains("postgresql://"), "{text}");
}

#[test]
fn a_complete_production_configuration_parses() {
    let settings = parse(&[
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgresql://gw:pw@db:5432/auth_gateway"),
        ("AUTH_GATEWAY_ENCRYPTION_KEY", FERNET_KEY),
        ("AUTH_GATEWAY_API_KEY", &"k".repeat(64)),
        ("PUBLIC_BASE_URL", "https://auth.example.com"),
        ("HOST", "0.0.0.0"),
        ("PORT", "9000"),
    ])
    .unwrap();
    assert_eq!(settings.database.backend, Backend::Postgres);
    assert_eq!(settings.log.format, LogFormat::Json);
    assert_eq!(settings.http.port, 9000);
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let errs = parse(&[
        ("PORT", "eighty"),
        ("HOST", "localhost:80"),
        ("SESSION_EXPIRY_MINUTES", "0"),
        ("TOKEN_REFRESH_BUFFER_SECONDS", "-5"),
        ("LOG_LEVEL", "loud"),
        ("LOG_FORMAT", "xml"),
        ("ENVIRONMENT", "moon"),
        ("DATABASE_URL", "mysql://x"),
        ("AUDIT_TOKEN_READS", "sometimes"),
        ("AUDIT_RETENTION_DAYS", "0"),
        ("CORS_ALLOWED_ORIGINS", "not an origin"),
    ])
    .unwrap_err();
    let vars = variables(&errs);
    for expected in [
        "PORT",
        "HOST",
        "SESSION_EXPIRY_MINUTES",
        "TOKEN_REFRESH_BUFFER_SECONDS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "ENVIRONMENT",
        "DATABASE_URL",
        "AUDIT_TOKEN_READS",
        "AUDIT_RETENTION_DAYS",
        "CORS_ALLOWED_ORIGINS",
    ] {
        assert!(vars.contains(&expected), "{expected} missing from {vars:?}");
    }
    for err in &errs.0 {
        assert!(!err.fix.is_empty(), "{err}");
    }
}

#[test]
fn a_passphrase_needs_a_salt_and_the_error_never_shows_it() {
    let passphrase = "correct-horse-battery-staple";
    let errs = parse(&[
        ("AUTH_GATEWAY_ENCRYPTION_KEY", passphrase),
        ("AUTH_GATEWAY_ROTATION_KEYS", &format!("{FERNET_KEY},old-passphrase-xyz")),
    ])
    .unwrap_err();
    assert_eq!(variables(&errs), ["AUTH_GATEWAY_ENCRYPTION_KEY", "AUTH_GATEWAY_ROTATION_KEYS (entry 2)"]);
    let text = errs.to_string();
    assert!(text.contains("AUTH_GATEWAY_ENCRYPTION_KEY_SALT"));
    assert!(!text.contains(passphrase) && !text.contains("old-passphrase-xyz"));

    let ok =
        parse(&[("AUTH_GATEWAY_ENCRYPTION_KEY", passphrase), ("AUTH_GATEWAY_ENCRYPTION_KEY_SALT", "pepper")]).unwrap();
    assert_eq!(ok.keys.primary.unwrap().expose_secret(), passphrase);
}

#[test]
fn rotation_keys_are_a_comma_separated_list() {
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let settings = parse(&[("AUTH_GATEWAY_ROTATION_KEYS", &format!(" {FERNET_KEY} , {other},"))]).unwrap();
    let keys: Vec<_> = settings.keys.rotation.iter().map(|k| k.expose_secret().to_owned()).collect();
    assert_eq!(keys, [FERNET_KEY, other]);
}

#[test]
fn secrets_can_come_from_files() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{FERNET_KEY}").unwrap();
    let path = file.path().to_str().unwrap();
    let settings = parse(&[("AUTH_GATEWAY_ENCRYPTION_KEY_FILE", path), ("AUTH_GATEWAY_API_KEY_FILE", path)]).unwrap();
    assert_eq!(settings.keys.primary.unwrap().expose_secret(), FERNET_KEY);
    assert_eq!(settings.api_key.unwrap().expose_secret(), FERNET_KEY);
}

#[test]
fn a_secret_given_twice_or_from_a_missing_file_is_an_error() {
    let errs = parse(&[
        ("AUTH_GATEWAY_API_KEY", "direct-secret-value"),
        ("AUTH_GATEWAY_API_KEY_FILE", "/etc/hostname"),
        ("AUTH_GATEWAY_ENCRYPTION_KEY_FILE", "/nonexistent/key"),
    ])
    .unwrap_err();
    let mut vars = variables(&errs);
    vars.sort_unstable();
    assert_eq!(vars, ["AUTH_GATEWAY_API_KEY", "AUTH_GATEWAY_ENCRYPTION_KEY_FILE"]);
    assert!(errs.to_string().contains("/nonexistent/key"));
    assert!(!errs.to_string().contains("direct-secret-value"));
}

#[test]
fn no_error_ever_prints_a_secret() {
    let secrets = [
        ("AUTH_GATEWAY_ENCRYPTION_KEY", "pass-phrase-SECRET1"),
        ("AUTH_GATEWAY_ROTATION_KEYS", "rotation-SECRET2"),
        ("AUTH_GATEWAY_API_KEY", "short-SECRET3"),
        ("DATABASE_URL", "sqlite://SECRET4.db"),
    ];
    let mut pairs = secrets.to_vec();
    pairs.push(("ENVIRONMENT", "production"));
    let errs = parse(&pairs).unwrap_err();
    assert!(errs.0.len() >= 4, "{errs}");
    let text = format!("{errs} {errs:?}");
    for (_, secret) in secrets {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn public_urls_keep_their_path_for_relative_links() {
    let settings = parse(&[("PUBLIC_BASE_URL", "https://example.com/gateway")]).unwrap();
    let url = settings.http.public_base_url.unwrap();
    assert_eq!(url.join("auth/callback/google").unwrap().as_str(), "https://example.com/gateway/auth/callback/google");
}

#[test]
fn production_refuses_plain_http_public_urls() {
    let errs = parse(&[("ENVIRONMENT", "production"), ("PUBLIC_BASE_URL", "http://auth.example.com")]).unwrap_err();
    assert!(errs.0.iter().any(|e| e.variable == "PUBLIC_BASE_URL" && e.problem.contains("https")));
}

#[test]
fn log_levels_follow_the_design_documents_names() {
    for (given, filter) in [
        ("DEBUG", "debug"),
        ("INFO", "info"),
        ("WARNING", "warn"),
        ("ERROR", "error"),
        ("info,gateway=debug", "info,gateway=debug"),
    ] {
        assert_eq!(parse(&[("LOG_LEVEL", given)]).unwrap().log.filter, filter);
    }
}

#[test]
fn debug_output_of_settings_hides_secrets() {
    let settings =
        parse(&[("AUTH_GATEWAY_API_KEY", "api-key-SECRET5"), ("AUTH_GATEWAY_ENCRYPTION_KEY", FERNET_KEY)]).unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("api-key-SECRET5"));
    assert!(!debug.contains(FERNET_KEY));
}
