//! The human-readable fields of a served event (`event_id`, `actor`, …) and
//! their comparison with what the verified bytes say.
//!
//! Owns how the server renders a header and a payload as JSON, as far as a
//! verifier must know it to tell an honest view from a forged one. Must never
//! accept a shown value it cannot derive from checked bytes: a field is either
//! absent, equal to the rendering, or a failure (payload fields of an event
//! without payload bytes are counted as unchecked by the caller).

use serde_json::{Map, Value};

use crate::ledger::{Header, Payload};

/// The human-readable fields of one served event, exactly as its JSON shows
/// them: `None` when the field is absent from the JSON (a JSON `null` is a
/// shown value, `Some(Value::Null)`). Other fields (e.g. `status`) are not
/// kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Displayed {
    /// `event_id`: the header's event id, lowercase hyphenated.
    pub event_id: Option<Value>,
    /// `received_at`: the header's receive time, RFC 3339 UTC with six
    /// fractional digits.
    pub received_at: Option<Value>,
    /// `action`: the header's action.
    pub action: Option<Value>,
    /// `actor`: `{"id", "type"}` plus `"name"` and `"email"` when set.
    pub actor: Option<Value>,
    /// `resource`: `{"type", "id"}`.
    pub resource: Option<Value>,
    /// `occurred_at`, like `received_at`.
    pub occurred_at: Option<Value>,
    /// `request_id`.
    pub request_id: Option<Value>,
    /// `source_ip`.
    pub source_ip: Option<Value>,
    /// `user_agent`.
    pub user_agent: Option<Value>,
    /// `outcome`: `"success"` or `"failure"`.
    pub outcome: Option<Value>,
    /// `before`, as the JSON value.
    pub before: Option<Value>,
    /// `after`, as the JSON value.
    pub after: Option<Value>,
    /// `metadata`, as the JSON value.
    pub metadata: Option<Value>,
}

/// The names of the fields rendered from the header.
const HEADER_FIELDS: [&str; 3] = ["event_id", "received_at", "action"];
/// The names of the fields rendered from the payload.
const PAYLOAD_FIELDS: [&str; 10] = [
    "actor",
    "resource",
    "occurred_at",
    "request_id",
    "source_ip",
    "user_agent",
    "outcome",
    "before",
    "after",
    "metadata",
];

fn string(text: impl ToString) -> Value {
    Value::String(text.to_string())
}

impl Displayed {
    /// Takes the human-readable fields out of a served event object.
    pub fn from_event(event: &Map<String, Value>) -> Displayed {
        let get = |name: &str| event.get(name).cloned();
        Displayed {
            event_id: get("event_id"),
            received_at: get("received_at"),
            action: get("action"),
            actor: get("actor"),
            resource: get("resource"),
            occurred_at: get("occurred_at"),
            request_id: get("request_id"),
            source_ip: get("source_ip"),
            user_agent: get("user_agent"),
            outcome: get("outcome"),
            before: get("before"),
            after: get("after"),
            metadata: get("metadata"),
        }
    }

    /// The fields as the server renders them from `header` and, when given,
    /// `payload`. A payload field that is nil in the payload (or every
    /// payload field, without a payload) is `None`: the server omits it.
    pub fn rendered(header: &Header, payload: Option<&Payload>) -> Displayed {
        let mut view = Displayed {
            event_id: Some(string(header.event_id)),
            received_at: Some(string(header.received_at)),
            action: Some(string(&header.action)),
            ..Displayed::default()
        };
        if let Some(p) = payload {
            let mut actor = Map::new();
            actor.insert("id".to_owned(), string(&p.actor.id));
            actor.insert("type".to_owned(), string(&p.actor.kind));
            if let Some(name) = &p.actor.name {
                actor.insert("name".to_owned(), string(name));
            }
            if let Some(email) = &p.actor.email {
                actor.insert("email".to_owned(), string(email));
            }
            let mut resource = Map::new();
            resource.insert("type".to_owned(), string(&p.resource.kind));
            resource.insert("id".to_owned(), string(&p.resource.id));
            view.actor = Some(Value::Object(actor));
            view.resource = Some(Value::Object(resource));
            view.occurred_at = p.occurred_at.map(string);
            view.request_id = p.request_id.as_deref().map(string);
            view.source_ip = p.source_ip.as_deref().map(string);
            view.user_agent = p.user_agent.as_deref().map(string);
            view.outcome = p.outcome.map(|o| string(o.as_str()));
            view.before = p.before.clone();
            view.after = p.after.clone();
            view.metadata = p.metadata.clone();
        }
        view
    }

    fn header_fields(&self) -> [&Option<Value>; 3] {
        [&self.event_id, &self.received_at, &self.action]
    }

    fn payload_fields(&self) -> [&Option<Value>; 10] {
        [
            &self.actor,
            &self.resource,
            &self.occurred_at,
            &self.request_id,
            &self.source_ip,
            &self.user_agent,
            &self.outcome,
            &self.before,
            &self.after,
            &self.metadata,
        ]
    }

    /// Whether any payload field is shown.
    pub fn shows_payload_fields(&self) -> bool {
        self.payload_fields().iter().any(|v| v.is_some())
    }
}

/// What comparing a shown view with the verified bytes found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DisplayCheck {
    /// Every shown field equals the rendering of the bytes.
    AllChecked,
    /// The header fields shown match, but payload fields are shown without
    /// payload bytes to check them against.
    PayloadFieldsUnchecked,
}

/// Compares every field `shown` has with its rendering from `header` and,
/// when given, the decoded `payload`. On a difference, returns the name of
/// the first differing field (`actor.name` when inside an object).
pub(super) fn check_display(
    shown: &Displayed,
    header: &Header,
    payload: Option<&Payload>,
) -> Result<DisplayCheck, String> {
    let expected = Displayed::rendered(header, payload);
    let pairs = HEADER_FIELDS.iter().zip(
        shown
            .header_fields()
            .into_iter()
            .zip(expected.header_fields()),
    );
    for (name, (shown, expected)) in pairs {
        compare(name, shown, expected)?;
    }
    if payload.is_none() {
        return Ok(if shown.shows_payload_fields() {
            DisplayCheck::PayloadFieldsUnchecked
        } else {
            DisplayCheck::AllChecked
        });
    }
    let pairs = PAYLOAD_FIELDS.iter().zip(
        shown
            .payload_fields()
            .into_iter()
            .zip(expected.payload_fields()),
    );
    for (name, (shown, expected)) in pairs {
        compare(name, shown, expected)?;
    }
    Ok(DisplayCheck::AllChecked)
}

/// A field absent from the JSON is fine; a shown one must equal the
/// rendering, and a rendering of `None` means the server would omit it.
fn compare(name: &str, shown: &Option<Value>, expected: &Option<Value>) -> Result<(), String> {
    let Some(shown) = shown else {
        return Ok(());
    };
    if Some(shown) == expected.as_ref() {
        return Ok(());
    }
    // Name the first differing key when both sides are objects.
    if let (Value::Object(shown), Some(Value::Object(expected))) = (shown, expected) {
        let mut keys: Vec<&String> = shown.keys().chain(expected.keys()).collect();
        keys.sort();
        if let Some(key) = keys.into_iter().find(|k| shown.get(*k) != expected.get(*k)) {
            return Err(format!("{name}.{key}"));
        }
    }
    Err(name.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::ledger::{
        Actor, EventId, Outcome, PayloadCommitment, Resource, Seq, TenantId, Timestamp,
    };

    fn header() -> Header {
        Header {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            seq: Seq::new(3),
            event_id: "7C9E6679-7425-40DE-944B-E07FC1F90AE7"
                .parse::<EventId>()
                .unwrap(),
            received_at: "2026-03-01T09:00:00Z".parse::<Timestamp>().unwrap(),
            action: "employee.salary.update".to_owned(),
            payload_commitment: PayloadCommitment::from_bytes([0; 32]),
        }
    }

    fn payload() -> Payload {
        Payload {
            actor: Actor {
                id: "u1".to_owned(),
                kind: "user".to_owned(),
                name: Some("Ana".to_owned()),
                email: None,
            },
            resource: Resource {
                kind: "employee".to_owned(),
                id: "e1".to_owned(),
            },
            occurred_at: Some(Timestamp::from_micros(1)),
            request_id: None,
            source_ip: None,
            user_agent: None,
            outcome: Some(Outcome::Failure),
            before: Some(json!({"salary": 1000})),
            after: None,
            metadata: None,
        }
    }

    /// The event as the server serves it (hashes and bytes left out).
    fn served() -> Value {
        json!({
            "seq": 3,
            "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "received_at": "2026-03-01T09:00:00.000000Z",
            "action": "employee.salary.update",
            "actor": {"id": "u1", "type": "user", "name": "Ana"},
            "resource": {"type": "employee", "id": "e1"},
            "occurred_at": "1970-01-01T00:00:00.000001Z",
            "outcome": "failure",
            "before": {"salary": 1000},
            "status": "created",
        })
    }

    fn check(event: &Value, payload: Option<&Payload>) -> Result<DisplayCheck, String> {
        let shown = Displayed::from_event(event.as_object().unwrap());
        check_display(&shown, &header(), payload)
    }

    #[test]
    fn the_server_rendering_matches_and_unknown_fields_are_ignored() {
        assert_eq!(
            check(&served(), Some(&payload())),
            Ok(DisplayCheck::AllChecked)
        );
        let shown = Displayed::from_event(served().as_object().unwrap());
        assert_eq!(shown, Displayed::rendered(&header(), Some(&payload())));
    }

    #[test]
    fn absent_fields_are_fine() {
        assert_eq!(
            check(&json!({}), Some(&payload())),
            Ok(DisplayCheck::AllChecked)
        );
        assert_eq!(check(&json!({}), None), Ok(DisplayCheck::AllChecked));
    }

    #[test]
    fn every_forged_field_is_named() {
        let forgeries = [
            (
                "event_id",
                json!("7C9E6679-7425-40DE-944B-E07FC1F90AE7"),
                "event_id",
            ),
            ("received_at", json!("2026-03-01T09:00:00Z"), "received_at"),
            ("action", json!("employee.salary.read"), "action"),
            (
                "actor",
                json!({"id": "u2", "type": "user", "name": "Ana"}),
                "actor.id",
            ),
            ("actor", json!({"id": "u1", "type": "user"}), "actor.name"),
            (
                "actor",
                json!({"id": "u1", "type": "user", "name": "Ana", "email": "a@b"}),
                "actor.email",
            ),
            ("actor", json!("u1"), "actor"),
            (
                "resource",
                json!({"type": "employee", "id": "e2"}),
                "resource.id",
            ),
            (
                "occurred_at",
                json!("1970-01-01T00:00:00.000002Z"),
                "occurred_at",
            ),
            ("request_id", json!("r1"), "request_id"),
            ("source_ip", json!("10.0.0.1"), "source_ip"),
            ("user_agent", json!(null), "user_agent"),
            ("outcome", json!("success"), "outcome"),
            ("before", json!({"salary": 1000.0}), "before.salary"),
            ("before", json!(null), "before"),
            ("after", json!({"salary": 1}), "after"),
            ("metadata", json!({}), "metadata"),
        ];
        for (field, value, named) in forgeries {
            let mut event = served();
            event[field] = value;
            assert_eq!(
                check(&event, Some(&payload())),
                Err(named.to_owned()),
                "{field}"
            );
        }
    }

    #[test]
    fn payload_fields_without_a_payload_are_unchecked_but_header_fields_are() {
        assert_eq!(
            check(&served(), None),
            Ok(DisplayCheck::PayloadFieldsUnchecked)
        );
        let mut event = served();
        event["action"] = json!("x");
        assert_eq!(check(&event, None), Err("action".to_owned()));
    }
}
