use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use annal::crypto::Pepper;
use annal::crypto::signing::NoteSigner;
use annal::ledger::{TenantId, VerifierKey};
use annal::pg::{self, Cluster};
use annal::service::auth::Scope;
use annal::service::keys::Keys;
use annal::service::{SharedClock, SystemClock, tenants};
use annal::store::Store;
use annal::verify::bundle::{BundleOptions, BundleReport, verify_bundle};
use serde_json::Value;
use uuid::Uuid;

pub const ANNAL: &str = env!("CARGO_BIN_EXE_annal");
pub const ANNAL_VERIFY: &str = env!("CARGO_BIN_EXE_annal-verify");
/// The origin of the test deployments' checkpoints.
pub const TEST_ORIGIN: &str = "annal.test";

struct TestCluster {
    cluster: Cluster,
}

/// The run's cluster, started on first use and stopped by a watchdog once
/// this test process has exited.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    &CLUSTER
        .get_or_init(|| {
            let root = std::env::temp_dir().join(format!("annal-test-{}", Uuid::new_v4().simple()));
            let cluster = Cluster::at(&root).expect("PostgreSQL server binaries");
            cluster.init().expect("initdb");
            cluster.start().expect("start PostgreSQL");
            cluster.create_roles().expect("create roles");
            spawn_watchdog(&root);
            TestCluster { cluster }
        })
        .cluster
}

fn spawn_watchdog(root: &std::path::Path) {
    let bin = pg::find_binaries().unwrap();
    let stop = format!(
        "{}{}/pg_ctl stop -D {}/data -m immediate",
        if nix::unistd::geteuid().is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        },
        bin.display(),
        root.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {root}",
        pid = std::process::id(),
        root = root.display()
    );
    // Deliberately never waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog");
}

/// A fresh, migrated database of its own, with the checkpoint signing key
/// every server on it uses.
#[derive(Clone)]
pub struct TestDb {
    pub name: String,
    /// `PRIVATE+KEY+...`, passed to servers as ANNAL_SIGNING_KEY.
    pub skey: String,
    /// Its public C2SP vkey.
    pub vkey: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = format!("t_{}", Uuid::new_v4().simple());
        let cluster = cluster();
        cluster.create_database(&name).unwrap();
        annal::store::migrate(&cluster.connection_string(pg::MIGRATOR_ROLE, &name))
            .await
            .unwrap();
        TestDb::named(&name)
    }

    /// A handle on database `name`, which this does not create or migrate.
    pub fn named(name: &str) -> TestDb {
        let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
        TestDb {
            name: name.to_owned(),
            skey: signer.to_skey().to_string(),
            vkey: signer.verifier_key().to_vkey(),
        }
    }

    pub fn url(&self, role: &str) -> String {
        cluster().connection_string(role, &self.name)
    }

    pub fn app_url(&self) -> String {
        self.url(pg::APP_ROLE)
    }

    /// A raw connection as `role` (no tenant set).
    pub async fn connect(&self, role: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(role), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Rows in the ledger, all tenants (as the superuser, bypassing RLS).
    pub async fn count_events(&self) -> i64 {
        let client = self.connect(pg::SUPERUSER).await;
        client
            .query_one("SELECT count(*) FROM annal.events", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// A running `annal serve` process with its captured output.
pub struct Server {
    child: Child,
    pub addr: String,
    output: Arc<Mutex<String>>,
}

impl Server {
    pub fn spawn(db: &TestDb, pepper: &Pepper) -> Server {
        Server::spawn_with(db, pepper, &[])
    }

    pub fn spawn_with(db: &TestDb, pepper: &Pepper, extra: &[(&str, &str)]) -> Server {
        let mut command = Command::new(ANNAL);
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", db.app_url())
            .env("ANNAL_API_KEY_PEPPER", pepper.to_hex())
            .env("ANNAL_SIGNING_KEY", &db.skey)
            .env("RUST_LOG", "debug");
        for (k, v) in extra {
            command.env(k, v);
        }
        Server::start(command)
    }

    /// Starts `command` and waits for its "listening" line.
    pub fn start(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["fields"]["message"] == "listening" {
                            let _ =
                                addr_tx.send(v["fields"]["http.addr"].as_str().unwrap().to_owned());
                        }
                    }
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", output.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle` (stdout and stderr are read
    /// by separate threads, so a line printed before "listening" on the
    /// other stream may not have been read yet). False after `timeout`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant with a key.
pub struct Tenant {
    pub id: TenantId,
    pub key: String,
    pub key_id: annal::crypto::ApiKeyId,
}

/// A database, a server on it, and one tenant with an all-scopes key.
pub struct TestApp {
    pub db: TestDb,
    pub pepper: Pepper,
    pub server: Server,
    pub tenant: Tenant,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Like [`spawn_app`], with extra environment for the server.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await;
    let pepper = Pepper::generate();
    let server = Server::spawn_with(&db, &pepper, env);
    let mut app = TestApp {
        db,
        pepper,
        server,
        tenant: Tenant {
            id: TenantId::from_uuid(Uuid::nil()),
            key: String::new(),
            key_id: annal::crypto::ApiKeyId::from_uuid(Uuid::nil()),
        },
        http: reqwest::Client::new(),
    };
    app.tenant = app.new_tenant(&Scope::ALL).await;
    app
}

impl TestApp {
    pub fn store(&self) -> Store {
        Store::connect(&self.db.app_url(), 2).unwrap()
    }

    pub fn clock(&self) -> SharedClock {
        Arc::new(SystemClock)
    }

    pub async fn new_tenant(&self, scopes: &[Scope]) -> Tenant {
        let store = self.store();
        let created = tenants::create(&store, &self.clock(), "acme")
            .await
            .unwrap();
        self.new_key(created.tenant_id, scopes).await
    }

    pub async fn new_key(&self, tenant: TenantId, scopes: &[Scope]) -> Tenant {
        let keys = Keys::new(self.store(), self.pepper.clone(), self.clock());
        let key = keys.create(tenant, scopes).await.unwrap();
        Tenant {
            id: tenant,
            key: key.api_key,
            key_id: key.id,
        }
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.server.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(self.server.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Every event of `tenant`, oldest first, through the read API.
    pub async fn all_events(&self, tenant: &Tenant) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/events?limit=1000&cursor={c}"),
                None => "/v1/events?limit=1000".to_owned(),
            };
            let page: Value = self.get(&path, &tenant.key).await.json().await.unwrap();
            events.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        events.reverse();
        events
    }

    /// Exports `tenant`'s whole trail and verifies the bundle with the
    /// offline verifier's code and the deployment's public key: records,
    /// chain, Merkle roots, signatures and consistency proofs.
    /// First waits until a signed checkpoint covers every committed event
    /// (the signer runs once per interval), so the export covers them all.
    pub async fn verify_export(&self, tenant: &Tenant) -> BundleReport {
        let client = self.db.connect(pg::SUPERUSER).await;
        let committed: i64 = client
            .query_one(
                "SELECT count(*) FROM annal.events WHERE tenant_id = $1",
                &[&tenant.id.as_uuid()],
            )
            .await
            .unwrap()
            .get(0);
        let started = Instant::now();
        loop {
            let r = self.get("/v1/checkpoint", &tenant.key).await;
            assert_eq!(r.status(), 200);
            let note = r.text().await.unwrap();
            let size = annal::ledger::SignedCheckpoint::parse(&note)
                .unwrap()
                .checkpoint()
                .size;
            if size >= committed as u64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no checkpoint covers the {committed} committed events"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = self.get("/v1/export", &tenant.key).await;
        assert_eq!(r.status(), 200);
        let bundle = r.bytes().await.unwrap();
        let options = BundleOptions {
            vkeys: vec![VerifierKey::parse(&self.db.vkey).unwrap()],
            trusted_checkpoint: None,
            require_complete: true,
        };
        verify_bundle(&bundle[..], &options, &mut |_| {}).unwrap()
    }

    /// Verifies `tenant`'s whole chain with the offline verifier's code.
    pub async fn verify_chain(&self, tenant: &Tenant) -> annal::verify::ChainReport {
        let events = self.all_events(tenant).await;
        let text = serde_json::to_string(&events).unwrap();
        let records = annal::verify::parse_events(&text).unwrap();
        annal::verify::verify_chain(records).unwrap()
    }
}

/// Posts events `offset..offset + n` (see [`event`]) as one batch.
pub async fn post_events(app: &TestApp, tenant: &Tenant, n: usize, offset: usize) {
    let events: Vec<Value> = (0..n).map(|i| event(offset + i)).collect();
    let r = app
        .post(
            "/v1/events/batch",
            &tenant.key,
            &serde_json::json!({ "events": events }),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// A valid event with a distinct resource id.
pub fn event(n: usize) -> Value {
    serde_json::json!({
        "action": "salary.update",
        "actor": { "id": "u-1", "type": "user" },
        "resource": { "type": "employee", "id": format!("e-{n}") },
    })
}

pub fn data_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("annal-{name}-{}", Uuid::new_v4().simple()))
}

/// `annal ARGS` with nothing inherited that could point it at a database:
/// only the arguments and `env` reach it.
pub fn annal_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(ANNAL);
    command.args(args);
    for var in [
        "DATABASE_URL",
        "ANNAL_MIGRATOR_DATABASE_URL",
        "ANNAL_API_KEY_PEPPER",
        "ANNAL_CONFIG",
        "ANNAL_DATA_DIR",
        "ANNAL_SIGNING_KEY",
        "ANNAL_SIGNING_KEY_FILES",
    ] {
        command.env_remove(var);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs `command`, requires success, and parses its stdout as JSON.
pub fn succeeds(mut command: Command) -> Value {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `command`, requires failure, and returns its stderr.
pub fn fails(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(!out.status.success(), "{command:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A person logged in through `POST /v1/auth/login`: their session cookie
/// and anti-CSRF token.
#[derive(Clone, Debug)]
pub struct Person {
    pub user_id: Uuid,
    pub email: String,
    /// `__Host-annal_session=<token>`, as a `Cookie` header value.
    pub cookie: String,
    pub csrf: String,
}

/// A password long enough for the policy.
pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// The accounts service on this app's database, with the server's
    /// pepper (the test's own process; events it records are real).
    pub fn accounts(&self, clock: SharedClock) -> annal::service::accounts::Accounts {
        let ledger = annal::service::events::Ledger::new(self.store(), clock.clone(), 100, None);
        annal::service::accounts::Accounts::new(
            self.store(),
            &self.pepper,
            clock,
            ledger,
            annal::service::accounts::SessionLimits::default(),
            annal::service::limits::LoginLimiter::new(annal::service::limits::LoginLimit {
                per_account: 0,
                per_ip: 0,
            }),
        )
    }

    /// Creates a user with [`PASSWORD`] as an active member of `tenant` in
    /// `role` (e.g. "owner"); returns their id and email.
    pub async fn add_member(&self, tenant: TenantId, role: &str) -> (Uuid, String) {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let role = annal::service::auth::Role::parse(role).unwrap();
        let id = self
            .accounts(self.clock())
            .create_member("test", tenant, &email, PASSWORD, role)
            .await
            .unwrap();
        (id, email)
    }

    /// Logs in through the API; panics unless it answers 200.
    pub async fn login(&self, email: &str, password: &str) -> Person {
        self.login_with(serde_json::json!({ "email": email, "password": password }))
            .await
            .unwrap_or_else(|(status, body)| panic!("login failed: {status} {body}"))
    }

    /// Logs in with any body; the status and body when it is not 200.
    pub async fn login_with(&self, body: Value) -> Result<Person, (u16, Value)> {
        let r = self
            .http
            .post(self.server.url("/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let cookie = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err((status, answer));
        }
        let cookie = cookie.expect("a session cookie");
        let pair = cookie.split(';').next().unwrap().to_owned();
        Ok(Person {
            user_id: answer["session"]["user_id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            email: body["email"].as_str().unwrap_or_default().to_owned(),
            cookie: pair,
            csrf: answer["csrf_token"].as_str().unwrap().to_owned(),
        })
    }

    /// Creates a member of `tenant` in `role` and logs them in.
    pub async fn person(&self, tenant: TenantId, role: &str) -> Person {
        let (_, email) = self.add_member(tenant, role).await;
        self.login(&email, PASSWORD).await
    }

    /// A request as `person` (cookie and anti-CSRF header).
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        person: &Person,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, self.server.url(path))
            .header("cookie", &person.cookie)
            .header("x-annal-csrf", &person.csrf);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// `GET path` as `person`.
    pub async fn get_as(&self, path: &str, person: &Person) -> reqwest::Response {
        self.send_as(reqwest::Method::GET, path, person, None).await
    }
}
