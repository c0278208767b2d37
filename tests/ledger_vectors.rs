//! Golden byte vectors for the record format. The same values are printed in
//! `docs/FORMAT.md`; if a test here has to change, the format changed, and the
//! format version with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use annal::ledger::*;
use serde_json::json;

fn tenant() -> TenantId {
    "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap()
}

fn event() -> EventId {
    "7c9e6679-7425-40de-944b-e07fc1f90ae7".parse().unwrap()
}

fn salt() -> Salt {
    Salt::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap()
}

fn received_at() -> Timestamp {
    "2024-03-01T12:34:56.789012Z".parse().unwrap()
}

fn payload() -> Payload {
    Payload {
        actor: Actor {
            id: "u-1842".to_owned(),
            kind: "user".to_owned(),
            name: Some("Zoë Ångström".to_owned()),
            email: Some("zoe@example.com".to_owned()),
        },
        resource: Resource {
            kind: "employee".to_owned(),
            id: "emp-0042".to_owned(),
        },
        occurred_at: Some("2024-03-01T12:34:50.000123Z".parse().unwrap()),
        request_id: Some("req-7f3a".to_owned()),
        source_ip: Some("203.0.113.7".to_owned()),
        user_agent: None,
        outcome: Some(Outcome::Success),
        before: Some(json!({
            "salary": 85000,
            "currency": "EUR",
            "grade": "L4",
            "bonus_pct": 7.5,
            "adjustments": [-1200, 300],
        })),
        after: Some(json!({
            "salary": 91000,
            "currency": "EUR",
            "grade": "L5",
            "bonus_pct": 10.25,
            "adjustments": [],
            "note": "promoção 🎉",
        })),
        metadata: Some(
            json!({"reason": "annual review", "approvers": ["m-1", "m-2"], "delta": -6000}),
        ),
    }
}

fn sealed() -> Sealed {
    seal(
        tenant(),
        Seq::new(0),
        event(),
        received_at(),
        "employee.salary.update".to_owned(),
        &payload(),
        salt(),
    )
}

fn second_payload() -> Payload {
    Payload {
        outcome: Some(Outcome::Failure),
        metadata: Some(json!({"rows": 1})),
        ..Payload::new(
            Actor {
                id: "svc-payroll".to_owned(),
                kind: "service".to_owned(),
                name: None,
                email: None,
            },
            Resource {
                kind: "employee".to_owned(),
                id: "emp-0042".to_owned(),
            },
        )
    }
}

fn second_sealed() -> Sealed {
    seal(
        tenant(),
        Seq::new(1),
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301".parse().unwrap(),
        "2024-03-01T12:35:00Z".parse().unwrap(),
        "employee.salary.read".to_owned(),
        &second_payload(),
        Salt::from_hex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f").unwrap(),
    )
}

const PAYLOAD_0: &str = "9a94a6752d31383432a475736572af5a6fc3ab20c3856e67737472c3b66daf7a6f65406578616d706c652e636f6d92a8656d706c6f796565a8656d702d30303432cf000612989a1a2efba87265712d37663361ab3230332e302e3131332e37c0a77375636365737385ab61646a7573746d656e747392d1fb50cd012ca9626f6e75735f706374cb401e000000000000a863757272656e6379a3455552a56772616465a24c34a673616c617279ce00014c0886ab61646a7573746d656e747390a9626f6e75735f706374cb4024800000000000a863757272656e6379a3455552a56772616465a24c35a46e6f7465af70726f6d6fc3a7c3a36f20f09f8e89a673616c617279ce0001637883a9617070726f7665727392a36d2d31a36d2d32a564656c7461d1e890a6726561736f6ead616e6e75616c20726576696577";
const COMMITMENT_0: &str = "ccd9b5068d0b8ca151b62842de2866ce4f8ca81f4e64ce95ca25180e7e9474f5";
const RECORD_0: &str = "9701c4100f8fad5bd9cb469fa16570867728950e00c4107c9e6679742540de944be07fc1f90ae7cf000612989a81c614b6656d706c6f7965652e73616c6172792e757064617465c420ccd9b5068d0b8ca151b62842de2866ce4f8ca81f4e64ce95ca25180e7e9474f5";
const LEAF_0: &str = "d91550200feea946185b39bf49cc2231826897cefe792d35148cea2f736904ea";
const GENESIS: &str = "cd5e9ed8cbb6de55aae6ee1a0c8ca5b81546fe1eee59d18e9f3192d5d6d908fe";
const CHAIN_0: &str = "288fb1027c43b58ad1e948f1440e16a44364739486a97c802af63828b5d7cf96";

const PAYLOAD_1: &str = "9a94ab7376632d706179726f6c6ca773657276696365c0c092a8656d706c6f796565a8656d702d30303432c0c0c0c0a76661696c757265c0c081a4726f777301";
const COMMITMENT_1: &str = "69ba5c985a8c6e29c745ce81485e4bfc4a3e715c082ad6e587215fed890edc0a";
const RECORD_1: &str = "9701c4100f8fad5bd9cb469fa16570867728950e01c4103f2504e04f8941d39a0c0305e82c3301cf000612989ab2c500b4656d706c6f7965652e73616c6172792e72656164c42069ba5c985a8c6e29c745ce81485e4bfc4a3e715c082ad6e587215fed890edc0a";
const LEAF_1: &str = "178ff8bd7b0d132f2e56714893f3e7a43587fec4b448a6f1f90c65525b802a15";
const CHAIN_1: &str = "cc9cd5419c15e110d9b76a7639aa48dfcdbb1af4b90bb9c699ab099ec0401b5c";

#[test]
fn timestamps_in_the_vectors_are_these_microsecond_counts() {
    assert_eq!(received_at().micros(), 1_709_296_496_789_012);
    assert_eq!(
        payload().occurred_at.unwrap().micros(),
        1_709_296_490_000_123
    );
}

#[test]
fn record_0_encodes_and_hashes_to_the_golden_bytes() {
    let sealed = sealed();
    assert_eq!(hex::encode(&sealed.payload), PAYLOAD_0);
    assert_eq!(sealed.header.payload_commitment.to_hex(), COMMITMENT_0);
    assert_eq!(
        commit_payload(&salt(), &sealed.payload).to_hex(),
        COMMITMENT_0
    );
    assert_eq!(hex::encode(&sealed.record), RECORD_0);
    assert_eq!(sealed.leaf_hash.to_hex(), LEAF_0);
    assert_eq!(leaf_hash(&sealed.record).to_hex(), LEAF_0);
    assert_eq!(ChainHash::genesis(tenant()).to_hex(), GENESIS);
    assert_eq!(
        chain_hash(&ChainHash::genesis(tenant()), &sealed.leaf_hash).to_hex(),
        CHAIN_0
    );
}

#[test]
fn record_1_chains_onto_record_0() {
    let sealed = second_sealed();
    assert_eq!(hex::encode(&sealed.payload), PAYLOAD_1);
    assert_eq!(sealed.header.payload_commitment.to_hex(), COMMITMENT_1);
    assert_eq!(hex::encode(&sealed.record), RECORD_1);
    assert_eq!(sealed.leaf_hash.to_hex(), LEAF_1);
    let chain_0 = ChainHash::from_hex(CHAIN_0).unwrap();
    assert_eq!(chain_hash(&chain_0, &sealed.leaf_hash).to_hex(), CHAIN_1);

    let mut chain = Chain::genesis(tenant());
    chain.append(&LeafHash::from_hex(LEAF_0).unwrap());
    let (seq, head) = chain.append(&sealed.leaf_hash);
    assert_eq!((seq, head.to_hex().as_str()), (Seq::new(1), CHAIN_1));
}

#[test]
fn golden_bytes_decode_to_the_fixtures() {
    let header = Header::decode(&hex::decode(RECORD_0).unwrap()).unwrap();
    assert_eq!(header, sealed().header);
    assert_eq!(header.tenant_id, tenant());
    assert_eq!(header.seq, Seq::new(0));
    assert_eq!(header.event_id, event());
    assert_eq!(header.received_at, received_at());
    assert_eq!(header.action, "employee.salary.update");
    assert_eq!(
        decode_payload(&hex::decode(PAYLOAD_0).unwrap()).unwrap(),
        payload()
    );
    assert_eq!(
        decode_payload(&hex::decode(PAYLOAD_1).unwrap()).unwrap(),
        second_payload()
    );
    assert_eq!(
        Header::decode(&hex::decode(RECORD_1).unwrap()).unwrap(),
        second_sealed().header
    );
}

fn b64(hex_text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_text).unwrap())
}

/// Record 1 exactly as `GET /v1/events` serves it, with a field the verifier
/// must ignore (`status`).
fn served_1() -> serde_json::Value {
    json!({
        "seq": 1,
        "event_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "received_at": "2024-03-01T12:35:00.000000Z",
        "action": "employee.salary.read",
        "actor": {"id": "svc-payroll", "type": "service"},
        "resource": {"type": "employee", "id": "emp-0042"},
        "outcome": "failure",
        "metadata": {"rows": 1},
        "leaf_hash": LEAF_1,
        "chain_hash": CHAIN_1,
        "record": b64(RECORD_1),
        "payload_bytes": b64(PAYLOAD_1),
        "salt": "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
        "status": "created",
    })
}

/// Record 0 exactly as `GET /v1/events` serves it.
fn served_0() -> serde_json::Value {
    json!({
        "seq": 0,
        "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "received_at": "2024-03-01T12:34:56.789012Z",
        "action": "employee.salary.update",
        "actor": {"id": "u-1842", "type": "user", "name": "Zoë Ångström", "email": "zoe@example.com"},
        "resource": {"type": "employee", "id": "emp-0042"},
        "occurred_at": "2024-03-01T12:34:50.000123Z",
        "request_id": "req-7f3a",
        "source_ip": "203.0.113.7",
        "outcome": "success",
        "before": {"salary": 85000, "currency": "EUR", "grade": "L4", "bonus_pct": 7.5,
                   "adjustments": [-1200, 300]},
        "after": {"salary": 91000, "currency": "EUR", "grade": "L5", "bonus_pct": 10.25,
                  "adjustments": [], "note": "promoção 🎉"},
        "metadata": {"reason": "annual review", "approvers": ["m-1", "m-2"], "delta": -6000},
        "leaf_hash": LEAF_0,
        "chain_hash": CHAIN_0,
        "record": b64(RECORD_0),
        "payload_bytes": b64(PAYLOAD_0),
        "salt": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    })
}

/// The two golden records as a page of `GET /v1/events` (newest first);
/// record 0 as a caller who may not see payloads gets it (header fields
/// only, no payload bytes or salt).
fn served_page() -> serde_json::Value {
    let mut record_0 = served_0();
    let object = record_0.as_object_mut().unwrap();
    object.retain(|key, _| {
        [
            "seq",
            "event_id",
            "received_at",
            "action",
            "leaf_hash",
            "chain_hash",
            "record",
        ]
        .contains(&key.as_str())
    });
    json!({
        "events": [served_1(), record_0],
        "next_cursor": null,
    })
}

/// Both golden records with every field the server shows.
fn full_page() -> serde_json::Value {
    json!({"events": [served_1(), served_0()], "next_cursor": null})
}

fn run_cli(files: &[&std::path::Path], json_flag: bool) -> (i32, String) {
    run_cli_with(files, json_flag, &[])
}

fn run_cli_with(files: &[&std::path::Path], json_flag: bool, extra: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_annal-verify"));
    cmd.args(files);
    if json_flag {
        cmd.arg("--json");
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn annal_verify_accepts_the_golden_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.json");
    std::fs::write(&path, served_page().to_string()).unwrap();

    let (code, text) = run_cli(&[&path], true);
    assert_eq!(code, 0, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["report"]["records_checked"], 2);
    assert_eq!(report["report"]["payloads_checked"], 1);
    assert_eq!(report["report"]["head_chain_hash"], CHAIN_1);
    assert_eq!(report["report"]["anchored_at_genesis"], true);
}

#[test]
fn annal_verify_accepts_json_lines_split_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let page = served_page();
    let mut paths = Vec::new();
    for (i, event) in page["events"].as_array().unwrap().iter().enumerate() {
        let path = dir.path().join(format!("part{i}.jsonl"));
        std::fs::write(&path, format!("{event}\n")).unwrap();
        paths.push(path);
    }
    let paths: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let (code, text) = run_cli(&paths, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("OK: 2 records"), "{text}");
}

#[test]
fn annal_verify_names_the_first_failing_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut page = served_page();
    page["events"][0]["chain_hash"] = json!(CHAIN_0);
    let path = dir.path().join("page.json");
    std::fs::write(&path, page.to_string()).unwrap();

    let (code, text) = run_cli(&[&path], false);
    assert_eq!(code, 1);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("FAILED: seq 1: chain hash mismatch"),
        "{text}"
    );

    let (code, text) = run_cli(&[&path], true);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["error"]["code"], "chain_hash_mismatch");
    assert_eq!(report["error"]["seq"], 1);
}

#[test]
fn annal_verify_refuses_unreadable_input_and_empty_exports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "{\"events\": [{\"seq\": 0}]}").unwrap();
    let (code, text) = run_cli(&[&path], false);
    assert_eq!(code, 2);
    assert!(text.contains("bad.json"), "{text}");

    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{\"events\": [], \"next_cursor\": null}").unwrap();
    let (code, text) = run_cli(&[&empty], false);
    assert_eq!(code, 1);
    assert!(text.contains("no records"), "{text}");
}

/// Writes `page` to a temporary file and runs the CLI on it with `--json`.
fn verify_page_json(page: &serde_json::Value, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.json");
    std::fs::write(&path, page.to_string()).unwrap();
    let (code, text) = run_cli_with(&[&path], true, extra);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, report)
}

#[test]
fn annal_verify_accepts_every_field_the_server_shows() {
    let (code, report) = verify_page_json(&full_page(), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["report"]["payloads_checked"], 2);
    assert_eq!(report["report"]["displays_unchecked"], 0);
    assert_eq!(report["report"]["tenant_pinned"], false);
}

#[test]
fn annal_verify_names_a_forged_displayed_field() {
    let forgeries = [
        (
            1,
            "event_id",
            json!("3F2504E0-4F89-41D3-9A0C-0305E82C3301"),
            "event_id",
        ),
        (
            1,
            "received_at",
            json!("2024-03-01T12:35:00Z"),
            "received_at",
        ),
        (0, "action", json!("employee.salary.read"), "action"),
        (
            1,
            "actor",
            json!({"id": "u-1842", "type": "service"}),
            "actor.id",
        ),
        (
            0,
            "actor",
            json!({"id": "u-1842", "type": "user", "name": "Zoë Ångström"}),
            "actor.email",
        ),
        (
            1,
            "actor",
            json!({"id": "svc-payroll", "type": "service", "name": "Payroll"}),
            "actor.name",
        ),
        (
            1,
            "resource",
            json!({"type": "employee", "id": "emp-0043"}),
            "resource.id",
        ),
        (
            0,
            "occurred_at",
            json!("2024-03-01T12:34:50.000124Z"),
            "occurred_at",
        ),
        (
            1,
            "occurred_at",
            json!("2024-03-01T12:34:50.000123Z"),
            "occurred_at",
        ),
        (0, "request_id", json!("req-0000"), "request_id"),
        (0, "source_ip", json!("198.51.100.1"), "source_ip"),
        (0, "user_agent", json!("curl/8"), "user_agent"),
        (1, "outcome", json!("success"), "outcome"),
        (
            0,
            "before",
            json!({"salary": 95000, "currency": "EUR", "grade": "L4",
                             "bonus_pct": 7.5, "adjustments": [-1200, 300]}),
            "before.salary",
        ),
        (1, "after", json!({"rows": 1}), "after"),
        (
            0,
            "metadata",
            json!({"reason": "annual review", "approvers": ["m-1", "m-2"],
                               "delta": -6000.0}),
            "metadata.delta",
        ),
    ];
    // The page is newest first: seq 1 is at position 0.
    for (seq, field, value, named) in forgeries {
        let mut page = full_page();
        page["events"][1 - seq][field] = value;
        let (code, report) = verify_page_json(&page, &[]);
        assert_eq!(code, 1, "{field}: {report}");
        assert_eq!(report["error"]["code"], "display_mismatch", "{field}");
        assert_eq!(report["error"]["seq"], seq, "{field}");
        let message = report["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{named}`")),
            "{field}: {message}"
        );
    }
}

#[test]
fn annal_verify_counts_payload_fields_it_cannot_check() {
    let mut page = served_page();
    // Seq 0, served without payload bytes, shows an actor anyway.
    page["events"][1]["actor"] = json!({"id": "someone-else", "type": "user"});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.json");
    std::fs::write(&path, page.to_string()).unwrap();
    let (code, text) = run_cli(&[&path], false);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: 1 records show payload fields"),
        "{text}"
    );
    let (code, report) = verify_page_json(&page, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["report"]["displays_unchecked"], 1);
}

#[test]
fn annal_verify_refuses_a_payload_without_its_salt_and_vice_versa() {
    for (present, missing) in [("payload_bytes", "salt"), ("salt", "payload_bytes")] {
        let mut page = full_page();
        // A tampered payload whose salt was deleted to skip the check.
        page["events"][0]["payload_bytes"] = json!(b64(PAYLOAD_0));
        page["events"][0].as_object_mut().unwrap().remove(missing);
        let (code, report) = verify_page_json(&page, &[]);
        assert_eq!(code, 1, "{report}");
        assert_eq!(report["error"]["code"], "unpaired_payload");
        assert_eq!(report["error"]["seq"], 1);
        let message = report["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("seq 1: {present} without {missing}")),
            "{message}"
        );
    }
}

#[test]
fn annal_verify_checks_the_pinned_tenant() {
    let (code, report) = verify_page_json(
        &full_page(),
        &["--tenant", "0f8fad5b-d9cb-469f-a165-70867728950e"],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["report"]["tenant_pinned"], true);

    let (code, report) = verify_page_json(
        &full_page(),
        &["--tenant", "3f2504e0-4f89-41d3-9a0c-0305e82c3301"],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["error"]["code"], "wrong_tenant");
    assert_eq!(report["error"]["seq"], 0);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.json");
    std::fs::write(&path, full_page().to_string()).unwrap();
    let (code, text) = run_cli_with(&[&path], false, &["--tenant", "not-a-uuid"]);
    assert_eq!(code, 2, "{text}");
}
