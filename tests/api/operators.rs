//! Operator commands reach the same database as `serve`, and the embedded
//! default brings up a working service in one command.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use annal::crypto::Pepper;
use serde_json::{Value, json};

use crate::helpers::{Server, TestDb, annal_cmd, data_path, event, fails, succeeds};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn interrupt(server: &mut Server) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    server
        .wait_exit(Duration::from_secs(30))
        .expect("serve exits on Ctrl-C")
}

#[tokio::test]
async fn tenants_and_keys_are_managed_from_the_command_line() {
    let db = TestDb::new().await;
    let pepper = Pepper::generate();
    let (url, hex) = (db.app_url(), pepper.to_hex());
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("ANNAL_API_KEY_PEPPER", hex.as_str()),
    ];
    let tenant = succeeds(annal_cmd(&["tenant", "create", "Acme HR", "--json"], &env));
    assert_eq!(tenant["name"], "Acme HR");
    let tenant_id = tenant["tenant_id"].as_str().unwrap();
    let scopes = "events:write,events:read";
    let key = succeeds(annal_cmd(
        &[
            "keys", "create", "--tenant", tenant_id, "--scopes", scopes, "--json",
        ],
        &env,
    ));
    assert_eq!(key["scopes"], json!(["events:write", "events:read"]));
    let api_key = key["api_key"].as_str().unwrap();

    let server = Server::spawn(&db, &pepper);
    let http = reqwest::Client::new();
    let post = || {
        http.post(server.url("/v1/events"))
            .bearer_auth(api_key)
            .json(&event(1))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 201);

    let key_id = key["id"].as_str().unwrap();
    let revoked = succeeds(annal_cmd(&["keys", "revoke", key_id, "--json"], &env));
    assert_eq!(revoked["newly_revoked"], true);
    assert_eq!(
        post().await.unwrap().status(),
        401,
        "revocation takes effect on the next request"
    );
    let again = succeeds(annal_cmd(&["keys", "revoke", key_id, "--json"], &env));
    assert_eq!(again["newly_revoked"], false);
}

#[tokio::test]
async fn the_first_owner_of_an_organisation_is_created_from_the_command_line() {
    let db = TestDb::new().await;
    let pepper = Pepper::generate();
    let (url, hex) = (db.app_url(), pepper.to_hex());
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("ANNAL_API_KEY_PEPPER", hex.as_str()),
        ("ANNAL_SIGNING_KEY", db.skey.as_str()),
    ];
    let tenant = succeeds(annal_cmd(&["tenant", "create", "Acme HR", "--json"], &env));
    let org = tenant["tenant_id"].as_str().unwrap();
    let file = data_path("password");
    std::fs::write(&file, "a long enough password\n").unwrap();
    let owner = succeeds(annal_cmd(
        &[
            "user",
            "create",
            "--email",
            "Boss@Acme.example",
            "--org",
            org,
            "--role",
            "owner",
            "--password-file",
            path(&file),
            "--json",
        ],
        &env,
    ));
    assert_eq!(owner["role"], "owner");
    assert!(
        owner.get("password").is_none(),
        "a given password is never echoed"
    );
    // Without a file, a password is generated and shown once.
    let admin = succeeds(annal_cmd(
        &[
            "user",
            "create",
            "--email",
            "admin@acme.example",
            "--org",
            org,
            "--role",
            "admin",
            "--json",
        ],
        &env,
    ));
    let generated = admin["password"].as_str().unwrap().to_owned();

    let server = Server::spawn(&db, &pepper);
    let http = reqwest::Client::new();
    for (email, password, role) in [
        ("boss@acme.example", "a long enough password", "owner"),
        ("admin@acme.example", generated.as_str(), "admin"),
    ] {
        let r = http
            .post(server.url("/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{email}");
        assert_eq!(r.json::<Value>().await.unwrap()["role"], role);
    }
    // The same email twice, an unknown role, a short password: refused.
    let again = [
        "user",
        "create",
        "--email",
        "boss@acme.example",
        "--org",
        org,
        "--role",
        "viewer",
    ];
    assert!(fails(annal_cmd(&again, &env)).contains("exists"));
    let bad_role = [
        "user",
        "create",
        "--email",
        "x@acme.example",
        "--org",
        org,
        "--role",
        "king",
    ];
    assert!(fails(annal_cmd(&bad_role, &env)).contains("unknown role"));
    std::fs::write(&file, "short").unwrap();
    let short = [
        "user",
        "create",
        "--email",
        "y@acme.example",
        "--org",
        org,
        "--role",
        "viewer",
        "--password-file",
        path(&file),
    ];
    assert!(fails(annal_cmd(&short, &env)).contains("12"));
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn operator_commands_explain_their_mistakes() {
    let db = TestDb::new().await;
    let url = db.app_url();
    let pepper = Pepper::generate().to_hex();
    let without_pepper = [("DATABASE_URL", url.as_str())];
    let with_pepper = [
        ("DATABASE_URL", url.as_str()),
        ("ANNAL_API_KEY_PEPPER", pepper.as_str()),
    ];
    let nil = uuid::Uuid::nil().to_string();
    let create = |scopes| {
        [
            "keys",
            "create",
            "--tenant",
            nil.as_str(),
            "--scopes",
            scopes,
        ]
    };

    assert!(
        fails(annal_cmd(&create("events:write"), &without_pepper)).contains("ANNAL_API_KEY_PEPPER")
    );
    assert!(fails(annal_cmd(&create("events:fly"), &with_pepper)).contains("unknown scope"));
    assert!(fails(annal_cmd(&create("events:write"), &with_pepper)).contains("tenant not found"));
    assert!(
        fails(annal_cmd(&["keys", "revoke", &nil], &with_pepper)).contains("API key not found")
    );
    assert!(
        fails(annal_cmd(&["migrate"], &without_pepper)).contains("ANNAL_MIGRATOR_DATABASE_URL")
    );
}

#[tokio::test]
async fn migrate_applies_the_schema_as_the_migrator() {
    let db = TestDb::named(&format!("t_{}", uuid::Uuid::new_v4().simple()));
    TestDb::named("postgres")
        .connect(annal::pg::SUPERUSER)
        .await
        .batch_execute(&format!("CREATE DATABASE {} OWNER annal_migrator", db.name))
        .await
        .unwrap();
    let (app, migrator) = (db.app_url(), db.url(annal::pg::MIGRATOR_ROLE));
    let env = [
        ("DATABASE_URL", app.as_str()),
        ("ANNAL_MIGRATOR_DATABASE_URL", migrator.as_str()),
    ];
    let out = annal_cmd(&["migrate"], &env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied 5 migration"));
    let again = annal_cmd(&["migrate"], &env).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("applied 0 migration"));
}

#[tokio::test]
async fn serve_without_a_database_url_runs_its_own_postgres_and_a_demo_tenant() {
    let dir = data_path("embedded");
    let serve = || {
        annal_cmd(
            &["serve", "--bind", "127.0.0.1:0", "--data-dir", path(&dir)],
            &[],
        )
    };
    // An operator command may come first: it creates the cluster, keeps its
    // stdout pure JSON, and stops the PostgreSQL it started.
    let first = succeeds(annal_cmd(
        &[
            "tenant",
            "create",
            "First",
            "--json",
            "--data-dir",
            path(&dir),
        ],
        &[],
    ));
    assert_eq!(first["name"], "First");
    assert!(!dir.join("postgres/data/postmaster.pid").exists());

    let mut server = Server::start(serve());
    let credentials_path = dir.join("demo-credentials.json");
    let mode = std::fs::metadata(&credentials_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(&credentials_path).unwrap()).unwrap();
    let key = credentials["api_key"].as_str().unwrap().to_owned();
    assert!(credentials["tenant_id"].is_string());
    assert!(
        server.wait_for_output(&key, Duration::from_secs(10)),
        "prints the key once, on the terminal"
    );
    assert!(
        server.output().contains("curl"),
        "prints how to post a first event"
    );

    let http = reqwest::Client::new();
    let post = |server: &Server, body: Value| {
        http.post(server.url("/v1/events"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    assert_eq!(post(&server, event(1)).await.unwrap().status(), 201);
    // The demo owner can log in with what the file says.
    let login = http
        .post(server.url("/v1/auth/login"))
        .json(&serde_json::json!({
            "email": credentials["owner_email"],
            "password": credentials["owner_password"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-annal_session="), "{cookie}");
    assert!(
        server
            .output()
            .contains(credentials["owner_password"].as_str().unwrap())
    );
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // A second serve on the same data directory refuses, and leaves the
    // first one's PostgreSQL running.
    assert!(fails(serve()).contains("another annal serve"));
    assert_eq!(
        post(&server, event(2)).await.unwrap().status(),
        201,
        "the first serve still has its database"
    );

    // Ctrl-C stops the server and its PostgreSQL.
    assert!(interrupt(&mut server).success());
    assert!(
        !dir.join("postgres/data/postmaster.pid").exists(),
        "PostgreSQL stopped"
    );

    // The next start reuses the cluster: no new demo, the same key works.
    let mut server = Server::start(serve());
    assert!(!server.output().contains("demo tenant"));
    let r = post(&server, event(3)).await.unwrap();
    assert_eq!(r.status(), 201);
    // Seq 0 records the demo owner's creation, seq 2 the login.
    assert_eq!(r.json::<Value>().await.unwrap()["seq"], 4);

    // The embedded default signs with a key of its own, kept 0600 and
    // reused across starts: an export verifies with the vkey it printed.
    let key_mode = std::fs::metadata(dir.join("checkpoint-signing-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let vkey = credentials["vkey"].as_str().unwrap();
    let bundle = http
        .get(server.url("/v1/export"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let bundle_path = dir.join("trail.jsonl");
    std::fs::write(&bundle_path, &bundle).unwrap();
    let verified = std::process::Command::new(crate::helpers::ANNAL_VERIFY)
        .args([path(&bundle_path), "--vkey", vkey])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    interrupt(&mut server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_postgres_binaries_serve_names_the_package_to_install() {
    let dir = data_path("nobinaries");
    let stderr = fails(annal_cmd(
        &["serve", "--data-dir", path(&dir)],
        &[("ANNAL_PG_BIN", "/nonexistent")],
    ));
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_configuration_file_supplies_settings_that_flags_and_env_override() {
    let db = TestDb::new().await;
    let pepper = Pepper::generate();
    let dir = data_path("config");
    std::fs::create_dir_all(&dir).unwrap();
    let pepper_file = dir.join("pepper");
    std::fs::write(&pepper_file, pepper.to_hex()).unwrap();
    std::fs::set_permissions(&pepper_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The signing key is created by the command an operator would use.
    let signing_key = dir.join("signing-key");
    let generated = succeeds(annal_cmd(
        &[
            "keys",
            "signing",
            "generate",
            "--origin",
            "audit.example.com",
            "--out",
            path(&signing_key),
            "--json",
        ],
        &[],
    ));
    let vkey = generated["vkey"].as_str().unwrap().to_owned();
    assert!(vkey.starts_with("audit.example.com+"));
    let mode = std::fs::metadata(&signing_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = dir.join("annal.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{}\"\napi_key_pepper_file = \"{}\"\nbody_limit = 300\nbind = \"127.0.0.1:1\"\nsigning_key_files = [\"{}\"]\ncheckpoint_interval = \"250ms\"\n",
            db.app_url(),
            pepper_file.display(),
            signing_key.display()
        ),
    )
    .unwrap();
    let tenant = succeeds(annal_cmd(
        &[
            "tenant",
            "create",
            "Configured",
            "--json",
            "--config",
            path(&config),
        ],
        &[],
    ));
    let tenant_id = tenant["tenant_id"].as_str().unwrap();
    let key = succeeds(annal_cmd(
        &[
            "keys",
            "create",
            "--scopes",
            "events:write",
            "--json",
            "--tenant",
            tenant_id,
        ],
        &[("ANNAL_CONFIG", path(&config))],
    ))["api_key"]
        .as_str()
        .unwrap()
        .to_owned();

    // The flag beats the file's bind address; the file's body limit applies.
    let serve = || {
        annal_cmd(
            &["serve", "--bind", "127.0.0.1:0", "--config", path(&config)],
            &[],
        )
    };
    let server = Server::start(serve());
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(server.url("/v1/events"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    assert_eq!(post(event(1)).await.unwrap().status(), 201);
    let mut big = event(2);
    big["metadata"] = json!({ "note": "z".repeat(400) });
    assert_eq!(post(big).await.unwrap().status(), 413);
    // It signs with the configured key, and says which.
    assert!(server.wait_for_output(&vkey, Duration::from_secs(10)));

    // A signing key file others can read is refused.
    std::fs::set_permissions(&signing_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = fails(serve());
    assert!(
        refused.contains("chmod 600") && refused.contains("signing-key"),
        "{refused}"
    );
    std::fs::set_permissions(&signing_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A pepper file others can read is refused, and so is an unknown key.
    std::fs::set_permissions(&pepper_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(fails(serve()).contains("chmod 600"));
    std::fs::write(&config, "colour = \"red\"\n").unwrap();
    assert!(
        fails(annal_cmd(&["migrate", "--config", path(&config)], &[])).contains("unknown field")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
