//! Operator commands reach the same database as `serve`, and the embedded
//! default brings up a working service in one command.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{ANNAL, Server, TestDb, data_path, event};

fn annal(db: &TestDb, pepper: &annal::crypto::Pepper, args: &[&str]) -> Value {
    let output = Command::new(ANNAL)
        .args(args)
        .env("DATABASE_URL", db.app_url())
        .env("ANNAL_API_KEY_PEPPER", pepper.to_hex())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "annal {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn tenants_and_keys_are_managed_from_the_command_line() {
    let db = TestDb::new().await;
    let pepper = annal::crypto::Pepper::generate();
    let tenant = annal(&db, &pepper, &["tenant", "create", "Acme HR", "--json"]);
    assert_eq!(tenant["name"], "Acme HR");
    let tenant_id = tenant["tenant_id"].as_str().unwrap();
    let key = annal(
        &db,
        &pepper,
        &[
            "keys",
            "create",
            "--tenant",
            tenant_id,
            "--scopes",
            "events:write,events:read",
            "--json",
        ],
    );
    assert_eq!(
        key["scopes"],
        serde_json::json!(["events:write", "events:read"])
    );
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

    let revoked = annal(
        &db,
        &pepper,
        &["keys", "revoke", key["id"].as_str().unwrap(), "--json"],
    );
    assert_eq!(revoked["newly_revoked"], true);
    assert_eq!(
        post().await.unwrap().status(),
        401,
        "revocation takes effect on the next request"
    );
    let again = annal(
        &db,
        &pepper,
        &["keys", "revoke", key["id"].as_str().unwrap(), "--json"],
    );
    assert_eq!(again["newly_revoked"], false);
}

#[tokio::test]
async fn operator_commands_explain_their_mistakes() {
    let db = TestDb::new().await;
    let run = |args: &[&str], pepper: Option<&str>| {
        let mut c = Command::new(ANNAL);
        c.args(args)
            .env("DATABASE_URL", db.app_url())
            .env_remove("ANNAL_API_KEY_PEPPER");
        if let Some(p) = pepper {
            c.env("ANNAL_API_KEY_PEPPER", p);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let pepper = annal::crypto::Pepper::generate().to_hex();
    let nil = uuid::Uuid::nil().to_string();
    assert!(
        run(
            &[
                "keys",
                "create",
                "--tenant",
                &nil,
                "--scopes",
                "events:write"
            ],
            None
        )
        .contains("ANNAL_API_KEY_PEPPER")
    );
    assert!(
        run(
            &["keys", "create", "--tenant", &nil, "--scopes", "events:fly"],
            Some(&pepper)
        )
        .contains("unknown scope")
    );
    assert!(
        run(
            &[
                "keys",
                "create",
                "--tenant",
                &nil,
                "--scopes",
                "events:write"
            ],
            Some(&pepper)
        )
        .contains("tenant not found")
    );
    assert!(run(&["keys", "revoke", &nil], Some(&pepper)).contains("API key not found"));
    assert!(run(&["migrate"], None).contains("ANNAL_MIGRATOR_DATABASE_URL"));
}

#[tokio::test]
async fn migrate_applies_the_schema_as_the_migrator() {
    let db = TestDb {
        name: format!("t_{}", uuid::Uuid::new_v4().simple()),
    };
    TestDb {
        name: "postgres".into(),
    }
    .connect(annal::pg::SUPERUSER)
    .await
    .batch_execute(&format!("CREATE DATABASE {} OWNER annal_migrator", db.name))
    .await
    .unwrap();
    let out = Command::new(ANNAL)
        .arg("migrate")
        .env("DATABASE_URL", db.app_url())
        .env(
            "ANNAL_MIGRATOR_DATABASE_URL",
            db.url(annal::pg::MIGRATOR_ROLE),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied 1 migration"));
    let again = Command::new(ANNAL)
        .arg("migrate")
        .env("DATABASE_URL", db.app_url())
        .env(
            "ANNAL_MIGRATOR_DATABASE_URL",
            db.url(annal::pg::MIGRATOR_ROLE),
        )
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("applied 0 migration"));
}

#[tokio::test]
async fn serve_without_a_database_url_runs_its_own_postgres_and_a_demo_tenant() {
    let dir = data_path("embedded");
    // An operator command may come first: it creates the cluster, keeps its
    // stdout pure JSON, and stops the PostgreSQL it started.
    let out = Command::new(ANNAL)
        .args(["tenant", "create", "First", "--json", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["name"], "First");
    assert!(!dir.join("postgres/data/postmaster.pid").exists());

    let mut command = Command::new(ANNAL);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL");
    let mut server = Server::start(command);

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
    let r = http
        .post(server.url("/v1/events"))
        .bearer_auth(&key)
        .json(&event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        http.get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Ctrl-C stops the server and its PostgreSQL.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("serve exits on Ctrl-C");
    assert!(status.success());
    assert!(
        !dir.join("postgres/data/postmaster.pid").exists(),
        "PostgreSQL stopped"
    );

    // The second start reuses the cluster: no new demo, the same key works.
    let mut command = Command::new(ANNAL);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL");
    let mut server = Server::start(command);
    assert!(!server.output().contains("demo tenant"));
    let r = http
        .post(server.url("/v1/events"))
        .bearer_auth(&key)
        .json(&event(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["seq"], 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    server
        .wait_exit(Duration::from_secs(30))
        .expect("serve exits on Ctrl-C");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_postgres_binaries_serve_names_the_package_to_install() {
    let dir = data_path("nobinaries");
    let out = Command::new(ANNAL)
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env("ANNAL_PG_BIN", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_configuration_file_supplies_settings_that_flags_and_env_override() {
    let db = TestDb::new().await;
    let pepper = annal::crypto::Pepper::generate();
    let dir = data_path("config");
    std::fs::create_dir_all(&dir).unwrap();
    let pepper_file = dir.join("pepper");
    std::fs::write(&pepper_file, pepper.to_hex()).unwrap();
    std::fs::set_permissions(&pepper_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("annal.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{}\"\napi_key_pepper_file = \"{}\"\nbody_limit = 300\nbind = \"127.0.0.1:1\"\n",
            db.app_url(),
            pepper_file.display()
        ),
    )
    .unwrap();
    let tenant = {
        let out = Command::new(ANNAL)
            .args(["tenant", "create", "Configured", "--json", "--config"])
            .arg(&config)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let key = {
        let out = Command::new(ANNAL)
            .args([
                "keys",
                "create",
                "--scopes",
                "events:write",
                "--json",
                "--tenant",
            ])
            .arg(tenant["tenant_id"].as_str().unwrap())
            .env("ANNAL_CONFIG", &config)
            .env_remove("DATABASE_URL")
            .env_remove("ANNAL_API_KEY_PEPPER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // The flag beats the file's bind address; the file's body limit applies.
    let mut command = Command::new(ANNAL);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("ANNAL_API_KEY_PEPPER");
    let server = Server::start(command);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(server.url("/v1/events"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    assert_eq!(post(event(1)).await.unwrap().status(), 201);
    let mut big = event(2);
    big["metadata"] = serde_json::json!({ "note": "z".repeat(400) });
    assert_eq!(post(big).await.unwrap().status(), 413);

    // A pepper file others can read is refused, and so is an unknown key.
    std::fs::set_permissions(&pepper_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(ANNAL)
        .args(["serve", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("ANNAL_API_KEY_PEPPER")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::write(&config, "colour = \"red\"\n").unwrap();
    let out = Command::new(ANNAL)
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    let _ = std::fs::remove_dir_all(&dir);
}
