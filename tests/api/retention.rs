//! Retention against a real PostgreSQL: policies, legal holds, the purge
//! function's own refusals, purging across simulated years, a purge killed
//! half-way, the schedule inside `serve`, and verification afterwards.
//!
//! Events of many ages are appended in-process with a clock set in the
//! past (the ledger's clock is injected); the database's retention clock
//! is moved ahead through `annal.deployment_settings.clock_offset`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal::pg;
use annal::service::auth::WriteEvents;
use annal::service::events::{Ledger, prepare};
use annal::service::keys::Keys;
use annal::service::{Clock, SharedClock};
use chrono::{DateTime, Months, Utc};
use serde_json::Value;

use crate::helpers::{
    ANNAL_VERIFY, Tenant, TestApp, annal_cmd, data_path, event, fails, post_events, spawn_app,
};

struct FixedClock(Mutex<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn years_ago(years: u32) -> DateTime<Utc> {
    annal::service::SystemClock
        .now()
        .checked_sub_months(Months::new(12 * years))
        .unwrap()
}

fn days(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::days(n)
}

/// Appends events `offset..offset + n` of `tenant` as if received at `at`
/// (append the oldest first: receive times never go backwards).
async fn append_at(app: &TestApp, tenant: &Tenant, at: DateTime<Utc>, n: usize, offset: usize) {
    let clock: SharedClock = Arc::new(FixedClock(Mutex::new(at)));
    let ledger = Ledger::new(app.store(), clock.clone(), 1000, None);
    let keys = Keys::new(app.store(), app.pepper.clone(), clock);
    let who = keys
        .authenticate(&tenant.key)
        .await
        .unwrap()
        .authorize::<WriteEvents>()
        .unwrap();
    let all: Vec<usize> = (offset..offset + n).collect();
    for chunk in all.chunks(1000) {
        let pending = chunk
            .iter()
            .map(|&i| prepare(serde_json::from_value(event(i)).unwrap()).unwrap())
            .collect();
        ledger.append(&who, pending).await.unwrap();
    }
}

/// What an operator command needs to reach the app's database, purge and
/// sign.
fn cli_env(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", app.db.app_url()),
        (
            "ANNAL_RETENTION_DATABASE_URL",
            app.db.url(pg::RETENTION_ROLE),
        ),
        ("ANNAL_API_KEY_PEPPER", app.pepper.to_hex()),
        ("ANNAL_SIGNING_KEY", app.db.skey.clone()),
    ]
}

fn cli(app: &TestApp, args: &[&str]) -> std::process::Command {
    let env = cli_env(app);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    annal_cmd(args, &env)
}

/// Runs `annal ARGS --json`, requires success, parses its JSON lines.
fn cli_json(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(app, &all).output().unwrap();
    assert!(
        out.status.success(),
        "annal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn run_retention(app: &TestApp, tenant: &Tenant, extra: &[&str]) -> Value {
    let id = tenant.id.to_string();
    let mut args = vec!["retention", "run", "--tenant", &id];
    args.extend_from_slice(extra);
    let mut runs = cli_json(app, &args);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.remove(0)
}

/// (count, min seq, max seq) of the tenant's rows, as the superuser.
async fn rows(app: &TestApp, tenant: &Tenant) -> (i64, Option<i64>, Option<i64>) {
    let client = app.db.connect(pg::SUPERUSER).await;
    let row = client
        .query_one(
            "SELECT count(*), min(seq), max(seq) FROM annal.events WHERE tenant_id = $1",
            &[&tenant.id.as_uuid()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn actions(app: &TestApp, tenant: &Tenant) -> Vec<String> {
    let client = app.db.connect(pg::SUPERUSER).await;
    client
        .query(
            "SELECT action FROM annal.events WHERE tenant_id = $1 ORDER BY seq",
            &[&tenant.id.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Exports the trail and checks it with the `annal-verify` binary; returns
/// its JSON report.
async fn verify_with_binary(app: &TestApp, tenant: &Tenant) -> Value {
    let r = app.get("/v1/export", &tenant.key).await;
    assert_eq!(r.status(), 200);
    let path = data_path("retention-bundle");
    std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
    let out = std::process::Command::new(ANNAL_VERIFY)
        .arg(&path)
        .args(["--vkey", &app.db.vkey, "--complete", "--json"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

#[tokio::test]
async fn purging_across_seven_years_removes_exactly_the_expired_prefix() {
    let app = spawn_app().await;
    let t = &app.tenant;
    append_at(&app, t, years_ago(9), 300, 0).await;
    append_at(&app, t, years_ago(8), 50, 300).await;
    append_at(&app, t, years_ago(7) - days(2), 20, 350).await;
    append_at(&app, t, years_ago(7) + days(2), 30, 370).await;
    append_at(&app, t, years_ago(1), 20, 400).await;
    post_events(&app, t, 5, 420).await;

    // A dry run says what would go and deletes nothing.
    let dry = run_retention(&app, t, &["--dry-run"]);
    assert_eq!(dry["status"], "would_purge", "{dry}");
    assert_eq!(dry["purged"], 370);
    assert_eq!(dry["boundary_to"], 370);
    assert_eq!(rows(&app, t).await.0, 425);

    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "purged", "{run}");
    assert_eq!(run["purged"], 370);
    assert_eq!(run["boundary_from"], 0);
    assert_eq!(run["boundary_to"], 370);
    assert_eq!(run["period_months"], 84);
    let recorded = run["recorded_at_seq"].as_u64().unwrap();
    let attested_by = run["attested_by"].as_u64().unwrap();
    assert!(attested_by >= 370);
    // The young records and the purge's own record remain.
    assert_eq!(rows(&app, t).await, (56, Some(370), Some(recorded as i64)));

    // The purge is in the tenant's log, with its boundary.
    let r = app.get(&format!("/v1/events/{recorded}"), &t.key).await;
    assert_eq!(r.status(), 200);
    let purge: Value = r.json().await.unwrap();
    assert_eq!(purge["action"], "retention.purged");
    assert_eq!(purge["after"]["purged"]["from_seq"], 0);
    assert_eq!(purge["after"]["purged"]["to_seq"], 369);
    assert_eq!(purge["after"]["boundary"]["size"], 370);
    assert_eq!(
        purge["after"]["boundary"]["compact_range"]
            .as_array()
            .unwrap()
            .len(),
        370u32.count_ones() as usize
    );
    assert_eq!(purge["after"]["policy"]["period_months"], 84);

    // Purged records answer 410 with a stable code; retained ones prove.
    for path in [
        "/v1/events/12".to_owned(),
        "/v1/events/369/proof".to_owned(),
        "/v1/proofs/inclusion?seq=5".to_owned(),
        format!("/v1/proofs/consistency?from=100&to={attested_by}"),
    ] {
        let r = app.get(&path, &t.key).await;
        assert_eq!(r.status(), 410, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "purged", "{path}: {body}");
    }
    for seq in [370, 371, 399, 424] {
        let r = app.get(&format!("/v1/events/{seq}/proof"), &t.key).await;
        assert_eq!(r.status(), 200, "seq {seq}");
    }

    // The export starts at the boundary and verifies, the purge attested.
    let report = app.verify_export(t).await;
    let purged = report.purged.expect("the bundle says what was purged");
    assert_eq!(purged.size, 370);
    assert_eq!(purged.attested_by, attested_by);
    assert_eq!(report.from_seq.value(), 370);
    let report = verify_with_binary(&app, t).await;
    assert_eq!(report["report"]["purged"]["size"], 370, "{report}");

    // Purging again finds nothing and records nothing.
    let again = run_retention(&app, t, &[]);
    assert_eq!(again["status"], "nothing_expired", "{again}");
    assert_eq!(again["purged"], 0);
    assert!(again["recorded_at_seq"].is_null());
    let purge_records = actions(&app, t)
        .await
        .iter()
        .filter(|a| *a == "retention.purged")
        .count();
    assert_eq!(purge_records, 1);
}

#[tokio::test]
async fn a_legal_hold_blocks_purging_until_it_is_lifted() {
    let app = spawn_app().await;
    let t = &app.tenant;
    let id = t.id.to_string();
    append_at(&app, t, years_ago(8), 30, 0).await;
    post_events(&app, t, 5, 30).await;

    let held = cli_json(
        &app,
        &[
            "tenant",
            "hold",
            "on",
            "--tenant",
            &id,
            "--reason",
            "case 2026-117",
            "--by",
            "legal@acme",
        ],
    );
    assert_eq!(held[0]["legal_hold"], true);
    assert_eq!(held[0]["hold_reason"], "case 2026-117");
    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "legal_hold", "{run}");
    assert_eq!(run["purged"], 0);
    assert_eq!(rows(&app, t).await.1, Some(0));
    // The hold is on the record, with who placed it and why.
    let log = actions(&app, t).await;
    assert!(
        log.contains(&"retention.legal_hold_placed".to_owned()),
        "{log:?}"
    );

    let lifted = cli_json(
        &app,
        &[
            "tenant",
            "hold",
            "off",
            "--tenant",
            &id,
            "--reason",
            "case closed",
        ],
    );
    assert_eq!(lifted[0]["legal_hold"], false);
    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "purged", "{run}");
    assert_eq!(run["purged"], 30);
    let log = actions(&app, t).await;
    assert!(
        log.contains(&"retention.legal_hold_lifted".to_owned()),
        "{log:?}"
    );
    // Younger than the period, the hold's record outlives the purge.
    let placed = app
        .all_events(t)
        .await
        .into_iter()
        .find(|e| e["action"] == "retention.legal_hold_placed")
        .expect("the hold's record is retained");
    assert_eq!(placed["actor"]["id"], "legal@acme");
    assert_eq!(placed["metadata"]["reason"], "case 2026-117");
    assert_eq!(placed["before"]["legal_hold"], false);
    assert_eq!(placed["after"]["legal_hold"], true);

    // A hold without a reason is refused.
    let err = fails(cli(
        &app,
        &["tenant", "hold", "on", "--tenant", &id, "--reason", " "],
    ));
    assert!(err.contains("reason"), "{err}");
}

#[tokio::test]
async fn a_longer_period_keeps_older_records_and_the_floor_cannot_be_undercut() {
    let app = spawn_app().await;
    let t = &app.tenant;
    let id = t.id.to_string();
    append_at(&app, t, years_ago(11), 20, 0).await;
    append_at(&app, t, years_ago(9), 20, 20).await;
    post_events(&app, t, 5, 40).await;

    let set = cli_json(
        &app,
        &["tenant", "retention", "--tenant", &id, "--years", "10"],
    );
    assert_eq!(set[0]["period_months"], 120);
    assert_eq!(set[0]["floor_months"], 84);
    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "purged", "{run}");
    assert_eq!(run["purged"], 20);
    assert_eq!(run["period_months"], 120);
    assert_eq!(rows(&app, t).await.1, Some(20));

    // Below the floor: refused, by the service and by the database.
    let err = fails(cli(
        &app,
        &["tenant", "retention", "--tenant", &id, "--years", "6"],
    ));
    assert!(err.contains("floor"), "{err}");
    let app_role = app.db.connect(pg::APP_ROLE).await;
    app_role
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('annal.tenant_id', '{id}', true);"
        ))
        .await
        .unwrap();
    let err = app_role
        .execute(
            "INSERT INTO annal.retention_policies (tenant_id, version, period_months, legal_hold, \
             change, changed_at, event_id) VALUES ($1, 99, 12, false, 'period', now(), gen_random_uuid())",
            &[&t.id.as_uuid()],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("floor") || format!("{err:?}").contains("floor"),
        "{err:?}"
    );

    // Every change is recorded; showing it changes nothing.
    let shown = cli_json(&app, &["tenant", "retention", "--tenant", &id]);
    assert_eq!(shown[0]["version"], 1);
    let log = actions(&app, t).await;
    assert_eq!(
        log.iter()
            .filter(|a| *a == "retention.policy_changed")
            .count(),
        1,
        "{log:?}"
    );
    // An unknown tenant is not found, not created.
    let err = fails(cli(
        &app,
        &[
            "tenant",
            "retention",
            "--tenant",
            &uuid::Uuid::new_v4().to_string(),
            "--years",
            "8",
        ],
    ));
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn moving_the_database_clock_seven_years_ahead_expires_todays_records() {
    let app = spawn_app().await;
    let t = &app.tenant;
    post_events(&app, t, 20, 0).await;
    assert_eq!(run_retention(&app, t, &[])["status"], "nothing_expired");

    let owner = app.db.connect(pg::MIGRATOR_ROLE).await;
    owner
        .execute(
            "UPDATE annal.deployment_settings SET clock_offset = '7 years 1 day'",
            &[],
        )
        .await
        .unwrap();
    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "purged", "{run}");
    // Never the newest record: it is the chain's head.
    assert_eq!(run["purged"], 19);
    let report = app.verify_export(t).await;
    assert_eq!(report.purged.unwrap().size, 19);
}

#[tokio::test]
async fn the_purge_function_refuses_hostile_calls_and_only_it_can_delete() {
    let app = spawn_app().await;
    let t = &app.tenant;
    let other = app.new_tenant(&annal::service::auth::Scope::ALL).await;
    append_at(&app, t, years_ago(8), 10, 0).await;
    post_events(&app, t, 10, 10).await;
    post_events(&app, &other, 10, 0).await;
    // Checkpoints over everything, so only age and holds decide.
    for tenant in [t, &other] {
        let _ = run_retention(&app, tenant, &["--dry-run"]);
        let r = app.get("/v1/checkpoint", &tenant.key).await;
        assert_eq!(r.status(), 200);
    }

    let retention = app.db.connect(pg::RETENTION_ROLE).await;
    let purge = "SELECT status, purged FROM annal.purge_expired($1, $2, $3)";
    // Young records stay whatever the batch size; the other tenant's too.
    let row = retention
        .query_one(purge, &[&other.id.as_uuid(), &100_000i32, &false])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("nothing_expired".into(), 0)
    );
    // A random tenant id: nothing.
    let row = retention
        .query_one(purge, &[&uuid::Uuid::new_v4(), &100i32, &false])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(1), 0);
    // Bad arguments are errors, not wider purges.
    for (batch, dry) in [(0i32, false), (-5, false), (1_000_000, false)] {
        assert!(
            retention
                .query_one(purge, &[&t.id.as_uuid(), &batch, &dry])
                .await
                .is_err(),
            "batch {batch}"
        );
    }
    let none: Option<uuid::Uuid> = None;
    assert!(
        retention
            .query_one(purge, &[&none, &10i32, &false])
            .await
            .is_err()
    );

    // Under legal hold the function refuses, whatever is asked.
    let id = t.id.to_string();
    cli_json(
        &app,
        &["tenant", "hold", "on", "--tenant", &id, "--reason", "audit"],
    );
    let row = retention
        .query_one(purge, &[&t.id.as_uuid(), &100_000i32, &false])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "legal_hold");
    assert_eq!(rows(&app, t).await.1, Some(0));

    // Nobody deletes directly: not the retention role, not the app role,
    // not even with the purge function's settings made by hand.
    let app_role = app.db.connect(pg::APP_ROLE).await;
    for (client, role) in [(&retention, "retention"), (&app_role, "app")] {
        for sql in [
            format!(
                "BEGIN; SELECT set_config('annal.tenant_id', '{id}', true); \
                 SELECT set_config('annal.purge_tenant', '{id}', true); \
                 SELECT set_config('annal.purge_below', '1000', true); \
                 DELETE FROM annal.events; COMMIT"
            ),
            "TRUNCATE annal.events".to_owned(),
            "DELETE FROM annal.purge_boundaries".to_owned(),
            "UPDATE annal.deployment_settings SET clock_offset = '100 years'".to_owned(),
            "UPDATE annal.retention_policies SET legal_hold = false".to_owned(),
            "DELETE FROM annal.retention_policies".to_owned(),
            "INSERT INTO annal.purge_boundaries (tenant_id, size, chain_hash, compact_range, \
             checkpoint_size, cutoff, period_months, decided_at, purged_at) SELECT tenant_id, 1, \
             chain_hash, ARRAY[leaf_hash], 1, now(), 1, now(), now() FROM annal.events LIMIT 1"
                .to_owned(),
        ] {
            let result = client.batch_execute(&sql).await;
            let _ = client.batch_execute("ROLLBACK").await;
            assert!(result.is_err(), "{role} role ran: {sql}");
        }
    }
    let err = app_role
        .query_one(purge, &[&t.id.as_uuid(), &100i32, &false])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    // Without the purge function's settings, not even the superuser.
    let superuser = app.db.connect(pg::SUPERUSER).await;
    assert!(
        superuser
            .batch_execute("DELETE FROM annal.events")
            .await
            .is_err()
    );
    // The 20 events and the hold's record.
    assert_eq!(rows(&app, t).await.0, 21);
}

#[tokio::test]
async fn a_purge_killed_half_way_leaves_a_verifiable_ledger_and_the_next_run_finishes() {
    let app = spawn_app().await;
    let t = &app.tenant;
    append_at(&app, t, years_ago(8), 20_000, 0).await;
    post_events(&app, t, 5, 20_000).await;

    let id = t.id.to_string();
    let mut child = cli(
        &app,
        &["retention", "run", "--tenant", &id, "--batch", "100"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let superuser = app.db.connect(pg::SUPERUSER).await;
    let boundaries = "SELECT count(*), coalesce(max(size), 0) FROM annal.purge_boundaries \
        WHERE tenant_id = $1";
    let started = Instant::now();
    loop {
        let row = superuser
            .query_one(boundaries, &[&t.id.as_uuid()])
            .await
            .unwrap();
        if row.get::<_, i64>(0) >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the purge never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The batch in flight may still commit on the server side: wait until
    // the boundary stops moving.
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let row = superuser
            .query_one(boundaries, &[&t.id.as_uuid()])
            .await
            .unwrap();
        let now: i64 = row.get(1);
        if now == last {
            break;
        }
        last = now;
    }
    let row = superuser
        .query_one(boundaries, &[&t.id.as_uuid()])
        .await
        .unwrap();
    let reached: i64 = row.get(1);
    assert!(reached < 20_000, "the purge finished before it was killed");
    // What is left verifies: the partial boundary is attested.
    let report = app.verify_export(t).await;
    assert_eq!(report.purged.unwrap().size, reached as u64);
    assert_eq!(rows(&app, t).await.1, Some(reached));

    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "purged", "{run}");
    assert_eq!(run["boundary_to"], 20_000);
    // The one purge record covers the whole purge, the killed run's part too.
    let seq = run["recorded_at_seq"].as_u64().unwrap();
    let purge: Value = app
        .get(&format!("/v1/events/{seq}"), &t.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(purge["after"]["purged"]["from_seq"], 0, "{purge}");
    assert_eq!(purge["after"]["purged"]["to_seq"], 19_999);
    let report = app.verify_export(t).await;
    assert_eq!(report.purged.unwrap().size, 20_000);
}

#[tokio::test]
async fn serve_purges_on_its_schedule() {
    let app = spawn_app().await;
    let url = app.db.url(pg::RETENTION_ROLE);
    let t = &app.tenant;
    append_at(&app, t, years_ago(8), 40, 0).await;
    post_events(&app, t, 3, 40).await;
    let server = crate::helpers::Server::spawn_with(
        &app.db,
        &app.pepper,
        &[
            ("ANNAL_RETENTION_DATABASE_URL", url.as_str()),
            ("ANNAL_RETENTION_INTERVAL", "1s"),
        ],
    );
    let started = Instant::now();
    while rows(&app, t).await.1 != Some(40) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not purge:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.wait_for_output("purged expired records", Duration::from_secs(10)));
}

#[tokio::test]
async fn each_role_holds_exactly_its_retention_privileges() {
    let db = crate::helpers::TestDb::new().await;
    let client = db.connect(pg::SUPERUSER).await;
    let privileges = |role: &'static str, table: &'static str| {
        let client = &client;
        async move {
            let mut held = Vec::new();
            for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
                let granted: bool = client
                    .query_one(
                        "SELECT has_table_privilege($1, $2, $3)",
                        &[&role, &table, &privilege],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if granted {
                    held.push(privilege);
                }
            }
            held
        }
    };
    for (table, app) in [
        ("annal.retention_policies", vec!["SELECT", "INSERT"]),
        ("annal.purge_announcements", vec!["SELECT", "INSERT"]),
        ("annal.purge_boundaries", vec!["SELECT"]),
        ("annal.deployment_settings", vec!["SELECT"]),
        ("annal.events", vec!["SELECT", "INSERT"]),
    ] {
        assert_eq!(privileges(pg::APP_ROLE, table).await, app, "{table}");
        assert!(
            privileges(pg::RETENTION_ROLE, table).await.is_empty(),
            "{table}"
        );
    }
    let callable: Vec<String> = client
        .query(
            "SELECT p.proname::text FROM pg_proc p WHERE p.pronamespace = 'annal'::regnamespace \
             AND has_function_privilege($1, p.oid, 'EXECUTE') ORDER BY 1",
            &[&pg::RETENTION_ROLE],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        callable,
        ["purge_expired", "retention_tenants", "schema_version"]
    );
    let definer: Vec<(String, bool, Option<Vec<String>>)> = client
        .query(
            "SELECT proname::text, prosecdef, proconfig FROM pg_proc \
             WHERE pronamespace = 'annal'::regnamespace AND prosecdef",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(definer.len(), 2, "{definer:?}");
    for (name, _, config) in definer {
        let config = config.unwrap_or_default();
        assert!(
            config
                .iter()
                .any(|c| c == "search_path=pg_catalog, pg_temp"),
            "{name}: {config:?}"
        );
    }
}

#[tokio::test]
async fn serve_refuses_a_retention_role_that_could_bypass_the_ledger() {
    let db = crate::helpers::TestDb::new().await;
    let output = std::process::Command::new(crate::helpers::ANNAL)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", db.app_url())
        .env("ANNAL_RETENTION_DATABASE_URL", db.url(pg::MIGRATOR_ROLE))
        .env(
            "ANNAL_API_KEY_PEPPER",
            annal::crypto::Pepper::generate().to_hex(),
        )
        .env("ANNAL_SIGNING_KEY", &db.skey)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("retention role") && err.contains("owns ledger"),
        "{err}"
    );
}

#[tokio::test]
async fn an_export_in_progress_keeps_its_records_from_a_purge() {
    let app = spawn_app().await;
    let t = &app.tenant;
    append_at(&app, t, years_ago(8), 8_000, 0).await;
    post_events(&app, t, 5, 8_000).await;
    assert_eq!(
        run_retention(&app, t, &["--dry-run"])["status"],
        "would_purge"
    );
    // Read the first part of an export, purge, read the rest.
    let mut response = app.get("/v1/export", &t.key).await;
    assert_eq!(response.status(), 200);
    let mut bundle = Vec::new();
    while bundle.len() < 64 << 10 {
        bundle.extend(response.chunk().await.unwrap().unwrap());
    }
    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "export_in_progress", "{run}");
    assert_eq!(rows(&app, t).await.1, Some(0));
    while let Some(chunk) = response.chunk().await.unwrap() {
        bundle.extend(chunk);
    }
    let options = annal::verify::bundle::BundleOptions {
        vkeys: vec![annal::ledger::VerifierKey::parse(&app.db.vkey).unwrap()],
        trusted_checkpoint: None,
        require_complete: true,
    };
    annal::verify::bundle::verify_bundle(&bundle[..], &options, &mut |_| {}).unwrap();
    // Once the export is over, the purge goes ahead.
    let run = run_retention(&app, t, &[]);
    assert_eq!(run["status"], "purged", "{run}");
    assert_eq!(run["purged"], 8_000);
}

#[tokio::test]
async fn the_purge_refuses_old_snapshots_second_batches_and_records_that_do_not_match_their_checkpoint()
 {
    let app = spawn_app().await;
    let t = &app.tenant;
    append_at(&app, t, years_ago(8), 600, 0).await;
    post_events(&app, t, 5, 600).await;
    let _ = run_retention(&app, t, &["--dry-run"]);
    assert_eq!(app.get("/v1/checkpoint", &t.key).await.status(), 200);
    let retention = app.db.connect(pg::RETENTION_ROLE).await;
    let id = t.id.to_string();
    for sql in [
        // An older snapshot could hide a hold placed since.
        format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; \
             SELECT * FROM annal.purge_expired('{id}', 100, false); COMMIT"
        ),
        // One batch per transaction.
        format!(
            "BEGIN; SELECT * FROM annal.purge_expired('{id}', 100, false); \
             SELECT * FROM annal.purge_expired('{id}', 100, false); COMMIT"
        ),
    ] {
        let result = retention.batch_execute(&sql).await;
        let _ = retention.batch_execute("ROLLBACK").await;
        assert!(result.is_err(), "{sql}");
    }
    assert_eq!(rows(&app, t).await.1, Some(0));

    // A stored leaf that is not what was signed: the purge keeps the
    // evidence and says why.
    let attacker = app.db.connect(pg::SUPERUSER).await;
    attacker
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE annal.events SET leaf_hash = sha256('forged') \
             WHERE tenant_id = '{id}' AND seq = 599"
        ))
        .await
        .unwrap();
    let out = cli(&app, &["retention", "run", "--tenant", &id, "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("signed checkpoint") || printed.contains("error"),
        "{printed}"
    );
    assert_eq!(rows(&app, t).await.1, Some(0), "nothing was deleted");
}

#[tokio::test]
async fn a_policy_change_is_recorded_once_even_after_its_record_is_purged() {
    let app = spawn_app().await;
    let t = &app.tenant;
    let id = t.id.to_string();
    post_events(&app, t, 5, 0).await;
    cli_json(
        &app,
        &[
            "tenant",
            "retention",
            "--tenant",
            &id,
            "--years",
            "8",
            "--by",
            "alice",
        ],
    );
    post_events(&app, t, 5, 5).await;
    let owner = app.db.connect(pg::MIGRATOR_ROLE).await;
    owner
        .execute(
            "UPDATE annal.deployment_settings SET clock_offset = '8 years 1 day'",
            &[],
        )
        .await
        .unwrap();
    // Everything but the head goes, the change's record with it ...
    assert_eq!(run_retention(&app, t, &[])["status"], "purged");
    // ... and running again does not record the change a second time.
    let _ = run_retention(&app, t, &[]);
    let changes: Vec<String> = actions(&app, t)
        .await
        .into_iter()
        .filter(|a| a == "retention.policy_changed")
        .collect();
    assert!(changes.is_empty(), "re-recorded: {changes:?}");
}
