//! The payload: everything about an event that may carry personal data, and
//! its canonical encoding.
//!
//! Owns the payload's byte layout; must never be hashed without a salt (see
//! [`super::commit_payload`]), because its values are often guessable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::{DecodeError, Reader, Writer, decode_canonical};
use super::timestamp::Timestamp;

/// Whether the action the event describes succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Encoded as `"success"`.
    Success,
    /// Encoded as `"failure"`.
    Failure,
}

/// A string other than `"success"` or `"failure"` where an outcome belongs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome {0:?}: expected \"success\" or \"failure\"")]
pub struct ParseOutcomeError(pub String);

impl Outcome {
    /// `"success"` or `"failure"`, as encoded.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = ParseOutcomeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            other => Err(ParseOutcomeError(other.to_owned())),
        }
    }
}

/// Who did it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    /// The actor's id in the client application.
    pub id: String,
    /// What kind of actor, e.g. `user` or `service` (`type` in the HTTP API).
    pub kind: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
}

/// What it was done to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// What kind of resource, e.g. `employee`.
    pub kind: String,
    /// The resource's id in the client application.
    pub id: String,
}

/// The erasable part of an event.
///
/// `before`, `after` and `metadata` treat a JSON `null` the same as absence:
/// both encode as nil and decode as `None` (see [`Payload::normalised`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    /// Who did it.
    pub actor: Actor,
    /// What it was done to.
    pub resource: Resource,
    /// When the client says it happened (the server's receive time is in the
    /// header).
    pub occurred_at: Option<Timestamp>,
    /// The client's request or trace id.
    pub request_id: Option<String>,
    /// The end user's IP address, as text.
    pub source_ip: Option<String>,
    /// The end user's user agent.
    pub user_agent: Option<String>,
    /// Whether it succeeded.
    pub outcome: Option<Outcome>,
    /// The value before the change.
    pub before: Option<Value>,
    /// The value after the change.
    pub after: Option<Value>,
    /// Anything else the client wants kept.
    pub metadata: Option<Value>,
}

/// Number of elements in the payload, actor and resource arrays.
const PAYLOAD_FIELDS: u32 = 10;
const ACTOR_FIELDS: u32 = 4;
const RESOURCE_FIELDS: u32 = 2;

fn non_null(value: Option<Value>) -> Option<Value> {
    value.filter(|v| !v.is_null())
}

impl Payload {
    /// A payload with only its required parts; every optional field empty.
    pub fn new(actor: Actor, resource: Resource) -> Payload {
        Payload {
            actor,
            resource,
            occurred_at: None,
            request_id: None,
            source_ip: None,
            user_agent: None,
            outcome: None,
            before: None,
            after: None,
            metadata: None,
        }
    }

    /// The same payload with `Some(Value::Null)` in `before`, `after` and
    /// `metadata` replaced by `None`: the form decoding returns, so
    /// `decode_payload(&encode_payload(&p)) == Ok(p.normalised())` always.
    pub fn normalised(self) -> Payload {
        Payload {
            before: non_null(self.before),
            after: non_null(self.after),
            metadata: non_null(self.metadata),
            ..self
        }
    }
}

fn write_opt_json(w: &mut Writer, value: Option<&Value>) {
    match value {
        Some(v) => w.json(v),
        None => w.nil(),
    }
}

/// The canonical encoding: a MessagePack array of the ten fields in
/// declaration order, `actor` and `resource` as nested arrays, absent values
/// as nil, free-form JSON with sorted keys (see `docs/FORMAT.md`).
pub fn encode_payload(payload: &Payload) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    w.array_len(PAYLOAD_FIELDS as usize);

    w.array_len(ACTOR_FIELDS as usize);
    w.str(&payload.actor.id);
    w.str(&payload.actor.kind);
    w.opt_str(payload.actor.name.as_deref());
    w.opt_str(payload.actor.email.as_deref());

    w.array_len(RESOURCE_FIELDS as usize);
    w.str(&payload.resource.kind);
    w.str(&payload.resource.id);

    match payload.occurred_at {
        Some(t) => w.int(t.micros()),
        None => w.nil(),
    }
    w.opt_str(payload.request_id.as_deref());
    w.opt_str(payload.source_ip.as_deref());
    w.opt_str(payload.user_agent.as_deref());
    w.opt_str(payload.outcome.as_ref().map(Outcome::as_str));
    write_opt_json(&mut w, payload.before.as_ref());
    write_opt_json(&mut w, payload.after.as_ref());
    write_opt_json(&mut w, payload.metadata.as_ref());
    w.finish()
}

/// Parses a canonical payload encoding, refusing every other byte string.
/// Returns the [normalised](Payload::normalised) form.
pub fn decode_payload(bytes: &[u8]) -> Result<Payload, DecodeError> {
    decode_canonical(bytes, parse_payload, encode_payload)
}

fn opt_json(r: &mut Reader<'_>, field: &'static str) -> Result<Option<Value>, DecodeError> {
    if r.nil() {
        return Ok(None);
    }
    r.json(field).map(Some)
}

fn parse_payload(r: &mut Reader<'_>) -> Result<Payload, DecodeError> {
    r.array("payload", PAYLOAD_FIELDS, "an array of 10 elements")?;

    r.array("actor", ACTOR_FIELDS, "an array of 4 elements")?;
    let actor = Actor {
        id: r.str("actor.id")?.to_owned(),
        kind: r.str("actor.kind")?.to_owned(),
        name: r.opt_str("actor.name")?,
        email: r.opt_str("actor.email")?,
    };

    r.array("resource", RESOURCE_FIELDS, "an array of 2 elements")?;
    let resource = Resource {
        kind: r.str("resource.kind")?.to_owned(),
        id: r.str("resource.id")?.to_owned(),
    };

    let occurred_at = if r.nil() {
        None
    } else {
        Some(Timestamp::from_micros(r.int("occurred_at")?))
    };
    let request_id = r.opt_str("request_id")?;
    let source_ip = r.opt_str("source_ip")?;
    let user_agent = r.opt_str("user_agent")?;
    let outcome = match r.opt_str("outcome")? {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| DecodeError::WrongShape {
            field: "outcome",
            expected: "\"success\" or \"failure\"",
        })?),
    };
    Ok(Payload {
        actor,
        resource,
        occurred_at,
        request_id,
        source_ip,
        user_agent,
        outcome,
        before: opt_json(r, "before")?,
        after: opt_json(r, "after")?,
        metadata: opt_json(r, "metadata")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Payload {
        Payload::new(
            Actor {
                id: "u1".to_owned(),
                kind: "user".to_owned(),
                name: None,
                email: None,
            },
            Resource {
                kind: "employee".to_owned(),
                id: "e1".to_owned(),
            },
        )
    }

    #[test]
    fn explicit_json_null_is_the_same_as_absent() {
        let with_null = Payload {
            before: Some(Value::Null),
            ..minimal()
        };
        assert_eq!(encode_payload(&with_null), encode_payload(&minimal()));
        assert_eq!(
            decode_payload(&encode_payload(&with_null)).unwrap(),
            with_null.normalised()
        );
    }

    #[test]
    fn nested_nulls_are_kept() {
        let p = Payload {
            after: Some(json!({"x": null})),
            ..minimal()
        };
        assert_eq!(decode_payload(&encode_payload(&p)).unwrap(), p);
    }

    #[test]
    fn an_unknown_outcome_is_refused() {
        let mut p = minimal();
        p.outcome = Some(Outcome::Success);
        let bytes = encode_payload(&p);
        let at = bytes.windows(7).position(|w| w == b"success").unwrap();
        let mut tampered = bytes.clone();
        tampered[at + 3] = b'C';
        assert_eq!(
            decode_payload(&tampered),
            Err(DecodeError::WrongShape {
                field: "outcome",
                expected: "\"success\" or \"failure\""
            })
        );
    }

    #[test]
    fn outcome_text_round_trips() {
        for o in [Outcome::Success, Outcome::Failure] {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
        }
        assert!("ok".parse::<Outcome>().is_err());
    }
}
