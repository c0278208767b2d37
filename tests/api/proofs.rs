//! Checkpoints, proofs, keys and export bundles, checked the way an auditor
//! would: with the public key only, by the offline verifier's code and by
//! the `annal-verify` binary.

use std::process::Command;
use std::time::{Duration, Instant};

use annal::ledger::{
    SignedCheckpoint, TreeHash, VerifierKey, verify_consistency, verify_inclusion,
};
use annal::service::auth::Scope;
use serde_json::{Value, json};

use crate::helpers::{
    ANNAL_VERIFY, Server, Tenant, TestApp, annal_cmd, event, fails, post_events, spawn_app,
    spawn_app_with,
};

/// A checkpoint interval short enough that every request asking for a
/// checkpoint gets one covering what was posted before it.
const EVERY_REQUEST: (&str, &str) = ("ANNAL_CHECKPOINT_INTERVAL", "1ms");

fn vkey(app: &TestApp) -> VerifierKey {
    VerifierKey::parse(&app.db.vkey).unwrap()
}

/// The latest checkpoint, verified with the deployment's public key.
async fn checkpoint(app: &TestApp, tenant: &Tenant) -> SignedCheckpoint {
    let r = app.get("/v1/checkpoint", &tenant.key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    let signed = SignedCheckpoint::parse(&r.text().await.unwrap()).unwrap();
    signed.verify(&[vkey(app)]).unwrap();
    signed
}

/// Fetches the inclusion proof of `seq` in the tree of `signed`'s size and
/// verifies it against the signed root; returns the served JSON.
async fn assert_included(app: &TestApp, seq: u64, signed: &SignedCheckpoint) -> Value {
    let (size, root) = (signed.checkpoint().size, signed.checkpoint().root);
    let r = app
        .get(
            &format!("/v1/proofs/inclusion?seq={seq}&tree_size={size}"),
            &app.tenant.key,
        )
        .await;
    assert_eq!(r.status(), 200, "seq {seq} size {size}");
    let proof: Value = r.json().await.unwrap();
    let leaf = TreeHash::from_base64(proof["leaf_hash"].as_str().unwrap()).unwrap();
    verify_inclusion(seq, size, &leaf, &b64(&proof["audit_path"]), &root)
        .unwrap_or_else(|e| panic!("seq {seq} in {size}: {e}"));
    proof
}

/// Fetches the consistency proof between two checkpoints' sizes and
/// verifies it against their signed roots.
async fn assert_consistent(app: &TestApp, old: &SignedCheckpoint, new: &SignedCheckpoint) {
    let (old, new) = (old.checkpoint(), new.checkpoint());
    let r = app
        .get(
            &format!("/v1/proofs/consistency?from={}&to={}", old.size, new.size),
            &app.tenant.key,
        )
        .await;
    assert_eq!(r.status(), 200);
    let proof: Value = r.json().await.unwrap();
    verify_consistency(
        old.size,
        new.size,
        &b64(&proof["proof"]),
        &old.root,
        &new.root,
    )
    .unwrap_or_else(|e| panic!("{} -> {}: {e}", old.size, new.size));
}

fn b64(hashes: &Value) -> Vec<TreeHash> {
    hashes
        .as_array()
        .unwrap()
        .iter()
        .map(|h| TreeHash::from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn export(app: &TestApp, tenant: &Tenant, query: &str) -> Vec<u8> {
    let r = app.get(&format!("/v1/export{query}"), &tenant.key).await;
    assert_eq!(r.status(), 200, "{query}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    r.bytes().await.unwrap().to_vec()
}

/// Runs `annal-verify FILE ARGS`; returns its exit code and stdout.
fn annal_verify(bytes: &[u8], args: &[&str]) -> (i32, String) {
    let path = crate::helpers::data_path("bundle");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(ANNAL_VERIFY)
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn new_events_are_covered_by_a_signed_checkpoint_within_the_interval() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 5, 0).await;
    // Poll the stored checkpoint without asking for one to be signed.
    let started = Instant::now();
    let note = loop {
        let r = app.get("/v1/checkpoints/5", &app.tenant.key).await;
        if r.status() == 200 {
            break r.text().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no checkpoint after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let signed = SignedCheckpoint::parse(&note).unwrap();
    signed.verify(&[vkey(&app)]).unwrap();
    let checkpoint = signed.checkpoint();
    assert_eq!(checkpoint.size, 5);
    assert_eq!(
        checkpoint.origin,
        format!("{}/{}", crate::helpers::TEST_ORIGIN, app.tenant.id)
    );
    let events = app.all_events(&app.tenant).await;
    assert_eq!(
        checkpoint.chain_head.to_hex(),
        events[4]["chain_hash"].as_str().unwrap()
    );
}

#[tokio::test]
async fn every_event_has_an_inclusion_proof_to_the_signed_root() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 37, 0).await;
    let signed = checkpoint(&app, &app.tenant).await;
    let size = signed.checkpoint().size;
    assert_eq!(size, 37);
    for seq in 0..size {
        let proof = assert_included(&app, seq, &signed).await;
        assert_eq!(proof["leaf_index"], seq);
        assert_eq!(proof["tree_size"], size);
        assert_eq!(proof["checkpoint"].as_str().unwrap(), signed.to_text());
    }
}

#[tokio::test]
async fn successive_checkpoints_are_proven_consistent() {
    let app = spawn_app_with(&[EVERY_REQUEST]).await;
    let mut checkpoints = Vec::new();
    for round in 0..4 {
        post_events(&app, &app.tenant, 3 + round * 7, round * 100).await;
        checkpoints.push(checkpoint(&app, &app.tenant).await);
    }
    for pair in checkpoints.windows(2) {
        assert_consistent(&app, &pair[0], &pair[1]).await;
    }
    // And each stored checkpoint is served byte for byte.
    for signed in &checkpoints {
        let r = app
            .get(
                &format!("/v1/checkpoints/{}", signed.checkpoint().size),
                &app.tenant.key,
            )
            .await;
        assert_eq!(r.text().await.unwrap(), signed.to_text());
    }
}

#[tokio::test]
async fn proof_requests_out_of_range_are_refused_clearly() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 4, 0).await;
    checkpoint(&app, &app.tenant).await;
    let cases = [
        (
            "/v1/proofs/consistency?from=0&to=3",
            400,
            "tree_size_out_of_range",
        ),
        (
            "/v1/proofs/consistency?from=3&to=2",
            400,
            "tree_size_out_of_range",
        ),
        (
            "/v1/proofs/consistency?from=1&to=99",
            400,
            "tree_size_out_of_range",
        ),
        ("/v1/proofs/consistency?from=x&to=2", 400, "invalid_query"),
        ("/v1/proofs/inclusion?seq=9", 400, "tree_size_out_of_range"),
        ("/v1/proofs/inclusion?seq=0&tree_size=3", 404, "not_found"),
        ("/v1/proofs/inclusion?tree_size=3", 400, "invalid_query"),
        ("/v1/checkpoints/3", 404, "not_found"),
        ("/v1/checkpoints/abc", 400, "invalid_path"),
        ("/v1/export?from_seq=4", 400, "invalid_range"),
        ("/v1/export?from_seq=3&to_seq=1", 400, "invalid_range"),
        ("/v1/export?trusted_size=0", 400, "invalid_range"),
        ("/v1/export?bogus=1", 400, "invalid_query"),
        // Last: looking for a proof file is a recorded read, which grows
        // the trail the export cases above rely on.
        ("/v1/events/9/proof", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let r = app.get(path, &app.tenant.key).await;
        assert_eq!(r.status(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
}

#[tokio::test]
async fn an_empty_trail_has_no_checkpoint_and_nothing_to_export() {
    let app = spawn_app().await;
    for path in ["/v1/checkpoint", "/v1/export", "/v1/events/0/proof"] {
        let r = app.get(path, &app.tenant.key).await;
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn keys_lists_the_vkey_that_signs_checkpoints() {
    let app = spawn_app().await;
    let r = app.get("/v1/keys", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({ "vkeys": [app.db.vkey] }));
}

#[tokio::test]
async fn an_export_verifies_offline_with_the_public_key_alone() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 25, 0).await;
    checkpoint(&app, &app.tenant).await;
    post_events(&app, &app.tenant, 10, 100).await;
    let bundle = export(&app, &app.tenant, "").await;

    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey, "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["ok"], true, "{out}");

    // The export itself is on the record, after the exported range.
    let events = app.all_events(&app.tenant).await;
    assert_eq!(events.last().unwrap()["action"], "audit.export");

    // Without a trusted key, nothing is accepted.
    let other = annal::crypto::signing::NoteSigner::generate(crate::helpers::TEST_ORIGIN)
        .unwrap()
        .verifier_key()
        .to_vkey();
    let (code, out) = annal_verify(&bundle, &["--vkey", &other]);
    assert_eq!(code, 1, "{out}");
}

#[tokio::test]
async fn a_bundle_with_any_bit_flipped_fails_verification() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 6, 0).await;
    let bundle = export(&app, &app.tenant, "").await;
    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey]);
    assert_eq!(code, 0, "{out}");
    // A spread of positions through every kind of line.
    let step = (bundle.len() / 61).max(1);
    for position in (0..bundle.len()).step_by(step) {
        for bit in [0u8, 5] {
            let mut edited = bundle.clone();
            edited[position] ^= 1 << bit;
            let (code, out) = annal_verify(&edited, &["--vkey", &app.db.vkey]);
            assert_ne!(
                code, 0,
                "flipping bit {bit} of byte {position} went unnoticed: {out}"
            );
        }
    }
}

#[tokio::test]
async fn partial_exports_link_to_a_checkpoint_the_auditor_kept() {
    let app = spawn_app_with(&[EVERY_REQUEST]).await;
    post_events(&app, &app.tenant, 10, 0).await;
    let kept = checkpoint(&app, &app.tenant).await;
    let kept_path = crate::helpers::data_path("kept-checkpoint");
    std::fs::write(&kept_path, kept.to_text()).unwrap();
    post_events(&app, &app.tenant, 10, 100).await;
    let later = checkpoint(&app, &app.tenant).await;
    let kept_arg = kept_path.to_str().unwrap();

    // From seq 15 on, with a consistency proof from the kept size 10.
    let bundle = export(&app, &app.tenant, "?from_seq=15&trusted_size=10").await;
    let (code, out) = annal_verify(
        &bundle,
        &["--vkey", &app.db.vkey, "--trusted-checkpoint", kept_arg],
    );
    assert_eq!(code, 0, "{out}");

    // Without the kept checkpoint, the link is reported as unchecked.
    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey, "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["report"]["unverified_link_from"], 10, "{out}");

    // Without the proof, the verifier says how to get one.
    let bundle = export(&app, &app.tenant, "?from_seq=15").await;
    let (code, out) = annal_verify(
        &bundle,
        &["--vkey", &app.db.vkey, "--trusted-checkpoint", kept_arg],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("trusted_size=10"), "{out}");

    // A range inside the log ends at the next checkpoint.
    let bundle = export(&app, &app.tenant, "?from_seq=3&to_seq=5").await;
    let header: Value =
        serde_json::from_slice(bundle.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(header["from_seq"], 3);
    assert_eq!(header["to_seq"], kept.checkpoint().size - 1);
    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey]);
    assert_eq!(code, 0, "{out}");
    assert!(later.checkpoint().size >= 20);
    std::fs::remove_file(kept_path).unwrap();
}

#[tokio::test]
async fn a_tlog_proof_file_verifies_offline() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 9, 0).await;
    let r = app.get("/v1/events/4/proof", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let proof = r.bytes().await.unwrap();
    assert!(proof.starts_with(b"c2sp.org/tlog-proof@v1\n"));
    let (code, out) = annal_verify(&proof, &["--vkey", &app.db.vkey]);
    assert_eq!(code, 0, "{out}");
    let mut edited = proof.to_vec();
    let middle = edited.len() / 3;
    edited[middle] ^= 1;
    let (code, out) = annal_verify(&edited, &["--vkey", &app.db.vkey]);
    assert_ne!(code, 0, "{out}");
}

#[tokio::test]
async fn the_auditor_endpoints_need_a_key_with_events_read() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 3, 0).await;
    checkpoint(&app, &app.tenant).await;
    let writer = app.new_key(app.tenant.id, &[Scope::EventsWrite]).await;
    let paths = [
        "/v1/checkpoint",
        "/v1/checkpoints/3",
        "/v1/proofs/inclusion?seq=0",
        "/v1/proofs/consistency?from=1&to=3",
        "/v1/events/0/proof",
        "/v1/keys",
        "/v1/export",
    ];
    for path in paths {
        let r = app.get(path, &writer.key).await;
        assert_eq!(r.status(), 403, "{path}");
        let r = app.http.get(app.server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = app.get(path, "annal_not-a-key").await;
        assert_eq!(r.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn another_tenant_sees_only_its_own_tree() {
    let app = spawn_app_with(&[EVERY_REQUEST]).await;
    post_events(&app, &app.tenant, 8, 0).await;
    let ours = checkpoint(&app, &app.tenant).await;
    let other = app.new_tenant(&Scope::ALL).await;
    // Before it has events, the other tenant has nothing at all.
    for path in [
        "/v1/checkpoint",
        "/v1/checkpoints/8",
        "/v1/proofs/inclusion?seq=3&tree_size=8",
        "/v1/export",
        // Last: the attempt is recorded, in the other tenant's own trail.
        "/v1/events/3/proof",
    ] {
        let r = app.get(path, &other.key).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = app
        .get("/v1/proofs/consistency?from=1&to=8", &other.key)
        .await;
    assert_eq!(r.status(), 400);
    // With events of its own, its checkpoint and export are its own.
    post_events(&app, &other, 2, 0).await;
    let theirs = checkpoint(&app, &other).await;
    assert_eq!(theirs.checkpoint().size, 3, "its read, then its 2 events");
    assert!(theirs.checkpoint().origin.ends_with(&other.id.to_string()));
    assert_ne!(theirs.checkpoint().root, ours.checkpoint().root);
    let bundle = export(&app, &other, "").await;
    let text = String::from_utf8(bundle).unwrap();
    assert!(!text.contains(&app.tenant.id.to_string()));
}

#[tokio::test]
async fn a_rotated_key_keeps_old_checkpoints_verifiable() {
    // First the deployment signs with an old key...
    let old = annal::crypto::signing::NoteSigner::generate(crate::helpers::TEST_ORIGIN).unwrap();
    let old_skey = old.to_skey().to_string();
    let mut app = spawn_app_with(&[("ANNAL_SIGNING_KEY", old_skey.as_str()), EVERY_REQUEST]).await;
    post_events(&app, &app.tenant, 4, 0).await;
    let before = checkpoint_signed_by(&app, &old.verifier_key()).await;

    // ...then rotates: the new key signs, the old one stays published.
    let old_file = crate::helpers::data_path("old-signing-key");
    old.save_new(&old_file).unwrap();
    app.server = Server::spawn_with(
        &app.db,
        &app.pepper,
        &[
            ("ANNAL_SIGNING_KEY_FILES", old_file.to_str().unwrap()),
            EVERY_REQUEST,
        ],
    );
    let r = app.get("/v1/keys", &app.tenant.key).await;
    let body: Value = r.json().await.unwrap();
    let old_vkey = old.verifier_key().to_vkey();
    assert_eq!(body, json!({ "vkeys": [app.db.vkey, old_vkey] }));
    post_events(&app, &app.tenant, 3, 100).await;
    let after = checkpoint(&app, &app.tenant).await;
    assert!(after.verify(&[old.verifier_key()]).is_err());
    let r = app
        .get(
            &format!("/v1/checkpoints/{}", before.checkpoint().size),
            &app.tenant.key,
        )
        .await;
    assert_eq!(r.text().await.unwrap(), before.to_text());

    // An export spanning the rotation verifies with both published keys.
    let bundle = export(&app, &app.tenant, "").await;
    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey, "--vkey", &old_vkey]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey]);
    assert_eq!(
        code, 1,
        "checkpoints of the old key cannot be trusted without it: {out}"
    );
    std::fs::remove_file(old_file).unwrap();
}

async fn checkpoint_signed_by(app: &TestApp, key: &VerifierKey) -> SignedCheckpoint {
    let r = app.get("/v1/checkpoint", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let signed = SignedCheckpoint::parse(&r.text().await.unwrap()).unwrap();
    signed.verify(std::slice::from_ref(key)).unwrap();
    signed
}

/// Events with about `kib` KiB of metadata each.
async fn post_big_events(app: &TestApp, n: usize, kib: usize) {
    for i in 0..n {
        let mut body = event(10_000 + i);
        body["metadata"] = json!({ "blob": "x".repeat(kib * 1024) });
        let r = app.post("/v1/events", &app.tenant.key, &body).await;
        assert_eq!(r.status(), 201);
    }
}

#[tokio::test]
async fn an_export_spanning_many_pages_of_rows_and_bytes_verifies() {
    // Signed on demand right after the last post: no interval to wait out.
    let app = spawn_app_with(&[("ANNAL_CHECKPOINT_INTERVAL", "1ms")]).await;
    // More rows than one page holds, and more bytes than one page holds.
    for round in 0..3 {
        post_events(&app, &app.tenant, 900, round * 1000).await;
    }
    post_big_events(&app, 24, 300).await;
    let bundle = export(&app, &app.tenant, "").await;
    let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey, "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(report["report"]["records_checked"].as_u64().unwrap() >= 2724);
}

#[tokio::test]
async fn readers_that_stop_reading_an_export_do_not_hold_database_connections() {
    let app = spawn_app_with(&[("ANNAL_DB_POOL_SIZE", "2")]).await;
    post_big_events(&app, 100, 256).await;
    // Two exports (as many as the pool has connections) whose bodies are
    // never read: the server blocks on the client, not on the database.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let r = app.get("/v1/export", &app.tenant.key).await;
        assert_eq!(r.status(), 200);
        stalled.push(r);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let append = tokio::time::timeout(
        Duration::from_secs(10),
        app.post("/v1/events", &app.tenant.key, &event(1)),
    )
    .await
    .expect("an append is not stuck behind stalled exports");
    assert_eq!(append.status(), 201);
    let checkpoint = tokio::time::timeout(
        Duration::from_secs(10),
        app.get("/v1/checkpoint", &app.tenant.key),
    )
    .await
    .expect("a checkpoint read is not stuck behind stalled exports");
    assert_eq!(checkpoint.status(), 200);
    // The stalled exports still complete, and verify, once read.
    for r in stalled {
        let bundle = r.bytes().await.unwrap();
        let (code, out) = annal_verify(&bundle, &["--vkey", &app.db.vkey]);
        assert_eq!(code, 0, "{out}");
    }
}

#[tokio::test]
async fn requests_sign_at_most_one_checkpoint_per_interval() {
    // The background signer's first round comes right after the first
    // commit; its next one only after ten minutes.
    let app = spawn_app_with(&[("ANNAL_CHECKPOINT_INTERVAL", "10m")]).await;
    let mut served = Vec::new();
    for n in 0..5 {
        post_events(&app, &app.tenant, 1, n).await;
        served.push(checkpoint(&app, &app.tenant).await.checkpoint().size);
    }
    let client = app.db.connect(annal::pg::SUPERUSER).await;
    let signed: i64 = client
        .query_one(
            "SELECT count(*) FROM annal.checkpoints WHERE tenant_id = $1",
            &[&app.tenant.id.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        signed <= 2,
        "{signed} checkpoints signed for five requests (served sizes {served:?}): at most one by requests and one by the background signer"
    );
    assert!(served.windows(2).all(|w| w[0] <= w[1]), "{served:?}");
    assert!(*served.last().unwrap() < 5, "{served:?}");
    // A proof of an event no checkpoint covers yet: retry, not "no such event".
    let r = app.get("/v1/events/4/proof", &app.tenant.key).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let r = app.get("/v1/events/99/proof", &app.tenant.key).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_server_with_keys_of_another_origin_refuses_to_sign() {
    let mut app = spawn_app_with(&[EVERY_REQUEST]).await;
    post_events(&app, &app.tenant, 3, 0).await;
    let before = checkpoint(&app, &app.tenant).await;
    assert_eq!(before.checkpoint().size, 3);

    let elsewhere = annal::crypto::signing::NoteSigner::generate("elsewhere.test").unwrap();
    let skey = elsewhere.to_skey().to_string();
    app.server = Server::spawn_with(
        &app.db,
        &app.pepper,
        &[("ANNAL_SIGNING_KEY", skey.as_str()), EVERY_REQUEST],
    );
    post_events(&app, &app.tenant, 2, 100).await;

    // The last good checkpoint is still served, and nothing newer exists.
    let r = app.get("/v1/checkpoint", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), before.to_text());
    let r = app.get("/v1/checkpoints/5", &app.tenant.key).await;
    assert_eq!(r.status(), 404);
    let why = format!(
        "the tenant's latest checkpoint has origin {}/{}, this process would sign as elsewhere.test/{}",
        crate::helpers::TEST_ORIGIN,
        app.tenant.id,
        app.tenant.id
    );
    assert!(
        app.server.wait_for_output(&why, Duration::from_secs(5)),
        "the refusal is logged with its reason:\n{}",
        app.server.output()
    );
}

#[tokio::test]
async fn serve_refuses_keys_whose_name_cannot_be_an_origin() {
    let app = spawn_app().await;
    let signer = annal::crypto::signing::NoteSigner::generate("annal\u{7f}test").unwrap();
    let skey = signer.to_skey().to_string();
    let url = app.db.app_url();
    let pepper = app.pepper.to_hex();
    let stderr = fails(annal_cmd(
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("ANNAL_API_KEY_PEPPER", pepper.as_str()),
            ("ANNAL_SIGNING_KEY", skey.as_str()),
        ],
    ));
    assert!(stderr.contains("cannot be a checkpoint origin"), "{stderr}");
}

#[tokio::test]
async fn a_tlog_proof_file_is_a_recorded_read_and_other_proofs_are_not() {
    let app = spawn_app().await;
    post_events(&app, &app.tenant, 3, 0).await;
    // Hashes only: not recorded.
    for path in [
        "/v1/checkpoint",
        "/v1/checkpoints/3",
        "/v1/proofs/inclusion?seq=1",
        "/v1/proofs/consistency?from=1&to=3",
        "/v1/keys",
    ] {
        let r = app.get(path, &app.tenant.key).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    // The record itself, found or not: recorded.
    let r = app.get("/v1/events/1/proof", &app.tenant.key).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/v1/events/99/proof", &app.tenant.key).await;
    assert_eq!(r.status(), 404);

    let events = app.all_events(&app.tenant).await;
    assert_eq!(events.len(), 5, "3 events and 2 proof reads: {events:#?}");
    for (read, (seq, rows)) in events[3..].iter().zip([(1, 1), (99, 0)]) {
        assert_eq!(read["action"], "audit.read");
        assert_eq!(read["actor"]["id"], app.tenant.key_id.to_string());
        assert_eq!(read["resource"]["id"], "event_proof");
        assert_eq!(read["metadata"]["filter"]["seq"], seq);
        assert_eq!(read["metadata"]["rows"], rows);
    }
}

#[tokio::test]
async fn an_export_of_records_not_yet_signed_asks_to_retry_instead_of_cutting_short() {
    let app = spawn_app_with(&[("ANNAL_CHECKPOINT_INTERVAL", "10m")]).await;
    post_events(&app, &app.tenant, 3, 0).await;
    assert_eq!(checkpoint(&app, &app.tenant).await.checkpoint().size, 3);
    post_events(&app, &app.tenant, 2, 100).await;
    for query in ["?to_seq=4", "?from_seq=3"] {
        let r = app
            .get(&format!("/v1/export{query}"), &app.tenant.key)
            .await;
        assert_eq!(r.status(), 503, "{query}");
        assert!(r.headers().contains_key("retry-after"), "{query}");
    }
    // Without a range, the export ends at the last signed checkpoint.
    let bundle = export(&app, &app.tenant, "").await;
    let header: Value =
        serde_json::from_slice(bundle.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(header["to_seq"], 2);
}

#[tokio::test]
async fn proofs_from_the_stored_strata_verify_around_stratum_boundaries() {
    let app = spawn_app_with(&[("ANNAL_CHECKPOINT_INTERVAL", "1ms")]).await;
    // Checkpoints just below, at and just above 256 and 512 leaves.
    let mut posted = 0;
    let mut checkpoints = Vec::new();
    for size in [255usize, 256, 257, 511, 512, 513, 1030] {
        while posted < size {
            let n = (size - posted).min(1000);
            post_events(&app, &app.tenant, n, posted).await;
            posted += n;
        }
        let signed = loop {
            let signed = checkpoint(&app, &app.tenant).await;
            if signed.checkpoint().size == size as u64 {
                break signed;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        checkpoints.push(signed);
    }
    for signed in &checkpoints {
        for seq in [0, 1, 127, 128, 254, 255, 256, 257, 510, 511, 512, 1029] {
            if seq < signed.checkpoint().size {
                assert_included(&app, seq, signed).await;
            }
        }
    }
    for (i, old) in checkpoints.iter().enumerate() {
        for new in &checkpoints[i..] {
            assert_consistent(&app, old, new).await;
        }
    }
}
