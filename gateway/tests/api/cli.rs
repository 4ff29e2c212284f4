//! The `gateway` binary itself: the README's run command on a bare machine,
//! `config check`, `keys generate`, `migrate`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A command with an empty environment (but PATH), run in `dir`.
fn gateway(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(dir);
    cmd
}

/// The binary run with `args` in `dir` against `app`'s database and key.
fn against(app: &crate::helpers::TestApp, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    gateway(dir)
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("AUTH_GATEWAY_ENCRYPTION_KEY", &app.key)
        .output()
        .unwrap()
}

#[test]
fn with_no_configuration_at_all_it_serves_health_on_embedded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // PORT=0 only so parallel tests do not fight over 8000.
    let mut child = KillOnDrop(gateway(dir.path()).env("PORT", "0").stdout(Stdio::piped()).spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    let address = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no 'gateway ready' line within 60 s; log so far:\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if line.contains("gateway ready") {
            let start = line.find("address=").unwrap() + "address=".len();
            break line[start..].split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(log.contains("GENERATED"), "the generated key must be announced loudly:\n{log}");

    let body: serde_json::Value = reqwest::blocking::get(format!("http://{address}/health")).unwrap().json().unwrap();
    assert_eq!(body["status"], "healthy");
    assert!(dir.path().join("data/gateway.db").exists());
    for secret in ["data/encryption.key", "data/api-key"] {
        let meta = std::fs::metadata(dir.path().join(secret)).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600, "{secret}");
        let contents = std::fs::read_to_string(dir.path().join(secret)).unwrap();
        assert!(!log.contains(contents.trim()), "{secret} leaked into the log");
    }

    // Graceful shutdown on SIGTERM.
    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = wait_with_timeout(&mut child.0, Duration::from_secs(20));
    assert!(exit.success(), "exit status {exit:?}");
}

/// Kills the child if the test fails before it ends the child itself, so a
/// failed test never leaves a gateway running (and holding the test's pipes).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn config_check_names_every_problem_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway(dir.path())
        .args(["config", "check"])
        .env("ENVIRONMENT", "production")
        .env("AUTH_GATEWAY_ENCRYPTION_KEY", "my-secret-passphrase")
        .env("AUTH_GATEWAY_API_KEY", "short-secret")
        .env("PORT", "http")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    for variable in ["AUTH_GATEWAY_ENCRYPTION_KEY", "AUTH_GATEWAY_API_KEY", "DATABASE_URL", "PORT", "PUBLIC_BASE_URL"] {
        assert!(stderr.contains(variable), "{variable} not named in:\n{stderr}");
    }
    assert!(!stderr.contains("my-secret-passphrase") && !stderr.contains("short-secret"), "{stderr}");
}

#[test]
fn config_check_passes_a_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway(dir.path())
        .args(["config", "check"])
        .env("AUTH_GATEWAY_ENCRYPTION_KEY", "a passphrase")
        .env("AUTH_GATEWAY_ENCRYPTION_KEY_SALT", "a salt")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8(output.stdout).unwrap().contains("configuration OK"));
}

#[test]
fn keys_generate_prints_fernet_and_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let fernet = gateway(dir.path()).args(["keys", "generate"]).output().unwrap();
    let fernet = String::from_utf8(fernet.stdout).unwrap();
    assert!(gateway::crypto::Key::is_fernet_key(fernet.trim()), "{fernet}");

    let api = gateway(dir.path()).args(["keys", "generate", "--api-key"]).output().unwrap();
    let api = String::from_utf8(api.stdout).unwrap();
    assert_eq!(api.trim().len(), 64, "{api}");
}

#[test]
fn migrate_applies_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let up = gateway(dir.path()).arg("migrate").output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let status = gateway(dir.path()).args(["migrate", "status"]).output().unwrap();
    let stdout = String::from_utf8(status.stdout).unwrap();
    assert!(stdout.contains("applied m20261127_000001_create_tables"), "{stdout}");
    assert!(!stdout.contains("pending"), "{stdout}");

    let status_of =
        || String::from_utf8(gateway(dir.path()).args(["migrate", "status"]).output().unwrap().stdout).unwrap();
    let pending = |text: &str| text.lines().filter(|l| l.starts_with("pending")).count();

    // A bare `down` would drop everything: it is refused, and nothing changes.
    let bare = gateway(dir.path()).args(["migrate", "down"]).output().unwrap();
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--steps N"));
    assert_eq!(pending(&status_of()), 0);

    // One step: says which, undoes exactly it.
    let one = gateway(dir.path()).args(["migrate", "down", "--steps", "1"]).output().unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    assert!(String::from_utf8_lossy(&one.stderr).contains("_operations"));
    assert_eq!(pending(&status_of()), 1);

    // --all wants the typed confirmation (an empty answer changes nothing) ...
    let unconfirmed = gateway(dir.path()).args(["migrate", "down", "--all"]).stdin(Stdio::null()).output().unwrap();
    assert!(!unconfirmed.status.success());
    let said = String::from_utf8_lossy(&unconfirmed.stderr).to_string();
    assert!(said.contains("DROPS EVERY TABLE") && said.contains("0 stored credential(s)"), "{said}");
    assert_eq!(pending(&status_of()), 1);
    // --all --yes: everything is rolled back.
    let all = gateway(dir.path()).args(["migrate", "down", "--all", "--yes"]).output().unwrap();
    assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
    assert!(status_of().contains("pending m20261127_000001_create_tables"));
    assert_eq!(status_of().lines().filter(|l| l.starts_with("applied")).count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_table_is_refused_in_production_unless_forced() {
    if !crate::helpers::postgres_available() {
        return;
    }
    let db = crate::helpers::TestDb::new(crate::helpers::Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        gateway(dir.path())
            .args(args)
            .env("ENVIRONMENT", "production")
            .env("DATABASE_URL", &db.url)
            .env("AUTH_GATEWAY_ENCRYPTION_KEY", crate::helpers::fernet_key())
            .env("AUTH_GATEWAY_API_KEY", crate::helpers::API_KEY)
            .env("PUBLIC_BASE_URL", "https://auth.example.com/")
            .env("AUTH_GATEWAY_TRUSTED_PROXIES", "10.0.0.1")
            .output()
            .unwrap()
    };
    assert!(run(&["migrate"]).status.success());
    let refused = run(&["migrate", "down", "--all", "--yes"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to drop every table"));
    let status = String::from_utf8(run(&["migrate", "status"]).stdout).unwrap();
    assert!(!status.contains("pending"), "nothing was rolled back: {status}");
    let forced = run(&["migrate", "down", "--all", "--yes", "--force"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
}

#[test]
fn keys_rotate_works_with_the_development_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let none = gateway(dir.path()).args(["keys", "rotate"]).output().unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("encryption.key"), "names the file it looked for");
    // `keys status` opens the store with its keys, generating the development key file.
    assert!(gateway(dir.path()).args(["keys", "status"]).output().unwrap().status.success());
    let file = std::fs::read_to_string(dir.path().join("data").join("encryption.key")).unwrap();
    let rotated = gateway(dir.path()).args(["keys", "rotate"]).output().unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let out = String::from_utf8(rotated.stdout).unwrap();
    assert!(
        out.contains(&format!("AUTH_GATEWAY_ROTATION_KEYS={}", file.trim())),
        "the file's key becomes a rotation key"
    );
    assert!(out.lines().any(|l| l.starts_with("AUTH_GATEWAY_ENCRYPTION_KEY=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_added_by_the_cli_are_served_without_a_restart() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    assert_eq!(app.init("acme", "a@b.co", None).await.status(), 400, "unknown before it is added");

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "acme-client-secret-value\n").unwrap();
    let run = |args: &[&str]| against(&app, dir.path(), args);
    let added = run(&[
        "providers",
        "add",
        "acme",
        "--client-id",
        "acme-client",
        "--client-secret-file",
        secret.to_str().unwrap(),
        "--auth-url",
        &app.mock.authorize_url(),
        "--token-url",
        &app.mock.token_url(),
        "--userinfo-url",
        &app.mock.userinfo_url(),
        "--scopes",
        "openid email",
    ]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = String::from_utf8(run(&["providers", "list"]).stdout).unwrap();
    assert!(listed.contains("acme") && listed.contains("cli"), "{listed}");
    assert!(!listed.contains("acme-client-secret-value"));

    // The running gateway finds it on the first request for it (after its reload interval).
    let served = crate::helpers::eventually(Duration::from_secs(10), || async {
        app.init("acme", "a@b.co", None).await.status() == 200
    })
    .await;
    assert!(served, "the running gateway did not pick up the new provider");

    let google = run(&["providers", "remove", "google"]);
    assert!(!google.status.success(), "providers from the environment cannot be removed here");
    let removed = run(&["providers", "remove", "acme"]);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_managed_from_the_command_line_and_audited() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    app.authorize("mock", "alice@company.com").await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| against(&app, dir.path(), args);

    let added =
        run(&["clients", "add", "gmail-mcp", "--actions", "token", "--providers", "mock", "--domains", "company.com"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let key = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64);
    let token = |key: String| {
        let (client, url) = (app.client.clone(), app.url("/auth/token"));
        async move {
            client
                .post(url)
                .header("x-api-key", key)
                .json(&serde_json::json!({"provider": "mock", "user_email": "alice@company.com"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The running gateway finds the new client within seconds (it re-reads
    // clients on an unknown key, at most once a second).
    let found = crate::helpers::eventually(Duration::from_secs(5), || async { token(key.clone()).await == 200 }).await;
    assert!(found, "the new client was not accepted");

    let listed = String::from_utf8(run(&["clients", "list"]).stdout).unwrap();
    assert!(
        listed.contains("gmail-mcp") && listed.contains("actions=token") && listed.contains("providers=mock"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "keys are shown once, never listed");

    let rotated = run(&["clients", "rotate", "gmail-mcp", "--grace", "1h"]);
    assert!(rotated.status.success());
    let new_key = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();
    assert_ne!(new_key, key);
    app.state.services.clients().reload().await.unwrap();
    assert_eq!(token(new_key.clone()).await, 200);
    assert_eq!(token(key.clone()).await, 200, "the old key works during the grace period");

    assert!(run(&["clients", "disable", "gmail-mcp"]).status.success());
    app.state.services.clients().reload().await.unwrap();
    assert_eq!(token(new_key.clone()).await, 403);
    assert!(!run(&["clients", "disable", "nobody"]).status.success());

    let audit = String::from_utf8(run(&["audit", "--client", "cli"]).stdout).unwrap();
    for action in ["client_add", "client_rotate", "client_disable"] {
        assert!(audit.contains(action), "{action} not audited:\n{audit}");
    }
    assert!(!audit.contains(&key) && !audit.contains(&new_key));
    app.stop().await;
}

/// `gateway providers add` replacing a provider reaches every running
/// replica within seconds: two on PostgreSQL (told by NOTIFY), one on SQLite
/// (its periodic reload). A wrong client secret first marks the provider
/// failing (`providers list` says so); the corrected one is then used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_provider_reaches_every_running_replica_within_seconds() {
    use crate::helpers::{Backend, TestDb, fernet_key, postgres_available, spawn_app_with};

    let mut backends = vec![Backend::Sqlite];
    if postgres_available() {
        backends.push(Backend::Postgres);
    }
    for backend in backends {
        let key = fernet_key();
        let mock = mock_provider::MockProvider::start().await.unwrap();
        let first = spawn_app_with(TestDb::new(backend).await, key.clone(), mock.clone(), &[]).await;
        let mut replicas = vec![first];
        if backend == Backend::Postgres {
            let attached = TestDb::attach(backend, &replicas[0].db.url);
            replicas.push(spawn_app_with(attached, key.clone(), mock.clone(), &[]).await);
        }
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let output = gateway(dir.path())
                .args(args)
                .env("DATABASE_URL", &replicas[0].db.url)
                .env("AUTH_GATEWAY_ENCRYPTION_KEY", &key)
                .output()
                .unwrap();
            assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8(output.stdout).unwrap()
        };
        let add = |secret: &str| {
            let file = dir.path().join("secret");
            std::fs::write(&file, secret).unwrap();
            run(&[
                "providers",
                "add",
                "acme",
                "--client-id",
                mock.client_id(),
                "--client-secret-file",
                file.to_str().unwrap(),
                "--auth-url",
                &mock.authorize_url(),
                "--token-url",
                &mock.token_url(),
                "--userinfo-url",
                &mock.userinfo_url(),
                "--scopes",
                "openid email",
            ]);
        };
        add("a-rotated-away-secret");
        for (n, app) in replicas.iter().enumerate() {
            let (auth_url, session) = loop {
                let response = app.init("acme", &format!("user{n}@company.com"), None).await;
                if response.status() == 200 {
                    let body: serde_json::Value = response.json().await.unwrap();
                    break (
                        body["auth_url"].as_str().unwrap().to_owned(),
                        body["session_id"].as_str().unwrap().to_owned(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let page = app.browse(&auth_url).await;
            assert_eq!(page.status, 400, "the provider refuses the wrong secret");
            assert_eq!(app.status_json(&session).await["reason"], "token_exchange_failed");
        }
        let listed = run(&["providers", "list"]);
        assert!(listed.contains("FAILING") && listed.contains("invalid_client"), "{listed}");

        // The operator puts the right secret in; every replica uses it within seconds.
        add(mock.client_secret());
        let replaced = Instant::now();
        for (n, app) in replicas.iter().enumerate() {
            let served = crate::helpers::eventually(Duration::from_secs(10), || async {
                let (auth_url, _) = app.init_ok("acme", &format!("again{n}@company.com")).await;
                app.browse(&auth_url).await.status == 200
            })
            .await;
            assert!(served, "{backend:?} replica {n} still uses the replaced secret");
        }
        eprintln!(
            "{backend:?}: {} replica(s) used the replaced provider after {:?}",
            replicas.len(),
            replaced.elapsed()
        );
        let listed = run(&["providers", "list"]);
        assert!(!listed.contains("FAILING"), "a working configuration clears the failure: {listed}");
        for app in replicas.into_iter().rev() {
            app.stop().await;
        }
    }
}

#[test]
fn config_check_refuses_a_multi_tenant_microsoft_app_that_trusts_every_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let check = |tenant: &str, allowed: Option<&str>| {
        let mut cmd = gateway(dir.path());
        cmd.args(["config", "check"])
            .env("MICROSOFT_CLIENT_ID", "c")
            .env("MICROSOFT_CLIENT_SECRET", "s")
            .env("MICROSOFT_TENANT", tenant);
        if let Some(allowed) = allowed {
            cmd.env("MICROSOFT_ALLOWED_TENANTS", allowed);
        }
        cmd.output().unwrap()
    };
    for tenant in ["common", "organizations"] {
        let refused = check(tenant, None);
        assert!(!refused.status.success(), "{tenant}");
        let stderr = String::from_utf8(refused.stderr).unwrap();
        assert!(stderr.contains("MICROSOFT_TENANT") && stderr.contains("MICROSOFT_ALLOWED_TENANTS"), "{stderr}");
        let allowed = check(tenant, Some("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    }
    assert!(check("72f988bf-86f1-41af-91ab-2d7cd011db47", None).status.success());
}

#[test]
fn config_check_warns_about_weakened_guarantees() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway(dir.path())
        .args(["config", "check"])
        .env("AUTH_GATEWAY_PROVIDERS", "acme")
        .env("ACME_CLIENT_ID", "c")
        .env("ACME_CLIENT_SECRET", "s")
        .env("ACME_AUTH_URL", "https://idp.acme.test/authorize")
        .env("ACME_TOKEN_URL", "https://idp.acme.test/token")
        .env("ACME_TRUST_UNVERIFIED_EMAIL", "true")
        .env("AUTH_GATEWAY_TRUSTED_ISSUERS", "entra")
        .env("IDP_ENTRA_ISSUER", "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0")
        .env("IDP_ENTRA_EMAIL_CLAIM", "upn")
        .env("IDP_ENTRA_REQUIRE_VERIFIED_EMAIL", "false")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("warning: ACME_TRUST_UNVERIFIED_EMAIL=true"), "{stderr}");
    assert!(stderr.contains("warning: IDP_ENTRA_REQUIRE_VERIFIED_EMAIL=false"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_settings_are_managed_from_the_command_line() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| against(&app, dir.path(), args);
    let worker = mock_provider::idp::SigningKey::generate(mock_provider::idp::Alg::EdDsa);
    let public = dir.path().join("worker.jwk");
    std::fs::write(&public, worker.public_jwk().to_string()).unwrap();
    let added = run(&["clients", "add", "mail-mcp", "--audience", "api://mail-mcp", "--require-exchange"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let key = String::from_utf8(added.stdout).unwrap().trim().to_owned();

    let updated = run(&["clients", "update", "mail-mcp", "--audience", "api://a,api://b", "--assertion-key-file"]
        .into_iter()
        .chain([public.to_str().unwrap()])
        .collect::<Vec<_>>());
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let listed = String::from_utf8(run(&["clients", "list"]).stdout).unwrap();
    assert!(listed.contains("audiences=api://a,api://b  exchange-only  assertion-key"), "{listed}");
    // The key registered from the file is the one assertions are checked against.
    app.authorize("mock", "alice@company.com").await;
    app.state.services.clients().reload().await.unwrap();
    let iat = app.state.services.now().timestamp();
    let assertion = worker.sign(&serde_json::json!({"iss": "mail-mcp", "sub": "alice@company.com", "aud": app.address,
        "iat": iat, "exp": iat + 30, "jti": "cli-1", "audit_context": "cli test"}));
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", assertion.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("audience", "mock"),
    ];
    let exchanged =
        app.client.post(app.url("/oauth/token")).header("x-api-key", &key).form(&form).send().await.unwrap();
    assert_eq!(exchanged.status(), 200, "{}", exchanged.text().await.unwrap());

    // A private key, a symmetric key, or nothing to change: refused, nothing changed.
    let mut private = worker.public_jwk();
    private["d"] = serde_json::json!("bm90LWEtcmVhbC1rZXk");
    let private_file = dir.path().join("private.jwk");
    std::fs::write(&private_file, private.to_string()).unwrap();
    let refused = run(&["clients", "update", "mail-mcp", "--assertion-key-file", private_file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("public half only"), "{stderr}");
    assert!(!stderr.contains("bm90LWEtcmVhbC1rZXk"), "the private member is never echoed");
    assert!(!run(&["clients", "update", "mail-mcp"]).status.success());
    assert!(!run(&["clients", "update", "nobody", "--require-exchange"]).status.success());

    // The running gateway enforces what the CLI set.
    app.state.services.clients().reload().await.unwrap();
    let named = app
        .client
        .post(app.url("/auth/token"))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"provider": "mock", "user_email": "alice@company.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 403);
    assert!(
        run(&["clients", "update", "mail-mcp", "--allow-named-users", "--clear-audiences", "--remove-assertion-key"])
            .status
            .success()
    );
    let listed = String::from_utf8(run(&["clients", "list"]).stdout).unwrap();
    assert!(
        listed.contains("mail-mcp") && listed.contains("audiences=none") && !listed.contains("exchange-only"),
        "{listed}"
    );
    let audit = String::from_utf8(run(&["audit", "--client", "cli"]).stdout).unwrap();
    assert!(audit.contains("client_update") && audit.contains("assertion key registered"), "{audit}");
    app.stop().await;
}

#[test]
fn in_production_a_provider_added_by_the_cli_must_use_https() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let output = gateway(dir.path())
        .args(["providers", "add", "acme", "--client-id", "c", "--client-secret-file", secret.to_str().unwrap()])
        .args(["--auth-url", "https://idp.acme.test/authorize", "--token-url", "http://idp.acme.test/token"])
        .env("ENVIRONMENT", "production")
        .env("DATABASE_URL", "postgresql://gateway@127.0.0.1:1/unreachable")
        .env("AUTH_GATEWAY_ENCRYPTION_KEY", crate::helpers::fernet_key())
        .env("AUTH_GATEWAY_API_KEY", crate::helpers::API_KEY)
        .env("PUBLIC_BASE_URL", "https://auth.example.com/")
        .env("AUTH_GATEWAY_TRUSTED_PROXIES", "10.0.0.1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--token-url must be https"), "{stderr}");
}

#[test]
fn config_check_warns_when_production_trusts_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let check = |proxies: Option<&str>| {
        let mut cmd = gateway(dir.path());
        cmd.args(["config", "check"])
            .env("ENVIRONMENT", "production")
            .env("DATABASE_URL", "postgresql://gateway@127.0.0.1:1/db")
            .env("AUTH_GATEWAY_ENCRYPTION_KEY", crate::helpers::fernet_key())
            .env("AUTH_GATEWAY_API_KEY", crate::helpers::API_KEY)
            .env("PUBLIC_BASE_URL", "https://auth.example.com/");
        if let Some(proxies) = proxies {
            cmd.env("AUTH_GATEWAY_TRUSTED_PROXIES", proxies);
        }
        let output = cmd.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stderr).unwrap()
    };
    assert!(check(None).contains("warning: ENVIRONMENT=production and AUTH_GATEWAY_TRUSTED_PROXIES is not set"));
    assert!(!check(Some("172.28.0.10")).contains("TRUSTED_PROXIES"));
}

#[test]
fn the_metric_catalogue_is_printed_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway(dir.path()).args(["metrics", "catalogue", "--format", "json"]).output().unwrap();
    assert!(output.status.success());
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(entries.len(), gateway::telemetry::metrics::CATALOGUE.len());
    let refreshes = entries.iter().find(|e| e["name"] == "token_refresh_total").unwrap();
    assert_eq!(refreshes["type"], "counter");
    assert_eq!(refreshes["labels"], serde_json::json!(["provider", "trigger", "outcome", "category"]));
    let durations = entries.iter().find(|e| e["name"] == "http_request_duration_seconds").unwrap();
    assert_eq!(durations["type"], "histogram");
    assert!(durations["buckets"].as_array().is_some_and(|b| !b.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_offboard_and_manage_webhooks_from_the_command_line() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    app.authorize("mock", "alice@company.com").await;
    app.authorize("mock", "bob@other.org").await;
    let dir = tempfile::tempdir().unwrap();
    let (db_url, key, address) = (app.db.url.clone(), app.key.clone(), app.address.clone());
    let dir_path = dir.path().to_owned();
    let run = move |args: Vec<String>| {
        let (db_url, key, dir_path) = (db_url.clone(), key.clone(), dir_path.clone());
        tokio::task::spawn_blocking(move || {
            gateway(&dir_path)
                .args(&args)
                .env("DATABASE_URL", db_url)
                .env("AUTH_GATEWAY_ENCRYPTION_KEY", key)
                .env("AUTH_GATEWAY_API_KEY", crate::helpers::API_KEY)
                .output()
                .unwrap()
        })
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();

    let listed = run(args("credentials list --json --domain company.com")).await.unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(listed.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0]["user_email"].as_str(), lines[0]["state"].as_str()),
        (Some("alice@company.com"), Some("active"))
    );
    let table = String::from_utf8(run(args("credentials list --not-used-since 1d")).await.unwrap().stdout).unwrap();
    assert!(table.contains("alice@company.com") && table.contains("bob@other.org"), "{table}");
    assert!(!run(args("credentials list --state gone")).await.unwrap().status.success());

    // A subscription: the secret is printed once, and a test ping is signed with it.
    let got: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>> = Default::default();
    let sink = got.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((headers, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let added =
        run(args(&format!("webhooks add {hook_url} --events credential.revoked,session.failed"))).await.unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let out = String::from_utf8(added.stdout).unwrap();
    let mut out = out.lines();
    let (id, secret) = (out.next().unwrap().to_owned(), out.next().unwrap().to_owned());
    assert!(secret.starts_with("whsec_"));
    let listed = String::from_utf8(run(args("webhooks list")).await.unwrap().stdout).unwrap();
    assert!(listed.contains(&id) && listed.contains("credential.revoked,session.failed") && !listed.contains(&secret));
    let tested = run(args(&format!("webhooks test {id}"))).await.unwrap();
    assert!(tested.status.success(), "{}", String::from_utf8_lossy(&tested.stderr));
    {
        let got = got.lock().unwrap();
        let (headers, body) = &got[0];
        let h = |n: &str| headers[n].to_str().unwrap().to_owned();
        let secret = gateway::core::webhooks::signing::Secret::parse(&secret).unwrap();
        let now = app.clock.now().timestamp();
        assert!(secret.verify(
            &h("webhook-id"),
            h("webhook-timestamp").parse().unwrap(),
            body,
            &h("webhook-signature"),
            now
        ));
    }
    assert!(!run(args("webhooks add ftp://example.com/x")).await.unwrap().status.success());
    assert!(
        !run(args(&format!("webhooks add {hook_url} --events credential.everything"))).await.unwrap().status.success()
    );

    // Offboarding through the running gateway.
    let dry = run(args(&format!("users offboard alice@company.com --dry-run --url {address}"))).await.unwrap();
    assert!(String::from_utf8(dry.stdout).unwrap().contains("would_revoke"));
    let done = run(args(&format!("users offboard alice@company.com --url {address}"))).await.unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8(done.stdout).unwrap().contains("revoked"));
    assert_eq!(app.count("oauth_credentials").await, 1);
    app.state.workers.webhooks_once(app.clock.now()).await.unwrap();
    let deliveries =
        String::from_utf8(run(args("webhooks deliveries --status delivered")).await.unwrap().stdout).unwrap();
    assert!(deliveries.contains("credential.revoked"), "{deliveries}");
    assert!(run(args(&format!("webhooks remove {id}"))).await.unwrap().status.success());
    assert!(!run(args(&format!("webhooks remove {id}"))).await.unwrap().status.success());
    let requeued = run(args("webhooks redeliver")).await.unwrap();
    assert!(String::from_utf8(requeued.stdout).unwrap().starts_with("0 "), "nothing was dead");
    app.stop().await;
}
