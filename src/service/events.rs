//! Appending and reading a tenant's trail.
//!
//! Input is parsed here into ledger types under documented limits (see the
//! README's "Limits"); every read is itself appended to the trail as an
//! `audit.read` event before its answer is returned.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::append::{Appended, Appender, Pending};
use super::auth::{Authorized, Principal, ReadEvents, WriteEvents};
use super::checkpoints::Checkpointer;
use super::limits::IngestLimiter;
use super::{ServiceError, SharedClock};
use crate::ledger::{
    Actor, EventId, Outcome, Payload, Resource, Salt, Seq, TenantId, Timestamp, commit_payload,
    decode_payload, encode_payload,
};
use crate::store::Store;
use crate::store::events::{self as rows, ActionMatch, Filter, StoredEvent};

/// Most events in one batch request.
pub const MAX_BATCH: usize = 1000;
/// Most events returned by one query.
pub const MAX_LIMIT: u32 = 1000;
/// Events returned by a query that names no limit.
pub const DEFAULT_LIMIT: u32 = 100;

/// Longest accepted value of each string field, in bytes.
pub mod limits {
    /// `action`.
    pub const ACTION: usize = 128;
    /// `actor.id`, `resource.id`.
    pub const ID: usize = 256;
    /// `actor.type`, `resource.type`.
    pub const KIND: usize = 64;
    /// `actor.name`.
    pub const NAME: usize = 256;
    /// `actor.email`.
    pub const EMAIL: usize = 320;
    /// `request_id`.
    pub const REQUEST_ID: usize = 128;
    /// `user_agent`.
    pub const USER_AGENT: usize = 1024;
    /// Nesting of arrays and objects in `before`, `after` and `metadata`,
    /// so that any page of events stays well within what JSON parsers
    /// (serde_json: 128) accept.
    pub const JSON_DEPTH: usize = 64;
}

/// How deeply arrays and objects nest in `value` (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn shallow(field: &str, value: Option<Value>) -> Result<Option<Value>, ServiceError> {
    match value {
        Some(v) if depth(&v) > limits::JSON_DEPTH => Err(invalid(
            "invalid_field",
            format!("{field} nests deeper than {} levels", limits::JSON_DEPTH),
        )),
        other => Ok(other),
    }
}

/// One event as a client posts it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Client-chosen UUID: the idempotency key. Generated when absent.
    pub event_id: Option<Uuid>,
    /// When it happened, RFC 3339. Informational; the server's receive time
    /// is what orders and dates the record.
    pub occurred_at: Option<String>,
    /// What happened, e.g. `salary.update`: 1–128 of `A-Z a-z 0-9 . _ : / -`.
    pub action: String,
    /// Who did it.
    pub actor: ActorInput,
    /// What it was done to.
    pub resource: ResourceInput,
    /// The application's request id.
    pub request_id: Option<String>,
    /// IPv4 or IPv6 address of the actor.
    pub source_ip: Option<String>,
    /// The actor's user agent.
    pub user_agent: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<OutcomeInput>,
    /// Value before the change (any JSON).
    pub before: Option<Value>,
    /// Value after the change (any JSON).
    pub after: Option<Value>,
    /// Anything else (any JSON).
    pub metadata: Option<Value>,
}

/// The actor of an event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorInput {
    /// Stable id of the actor in the application.
    pub id: String,
    /// Kind of actor, e.g. `user`, `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
}

/// The resource of an event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// Kind of resource, e.g. `employee`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// Outcome of the audited operation.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeInput {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
}

/// A batch of events, appended all or nothing.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// 1 to 1,000 events.
    pub events: Vec<EventInput>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        code,
        message: message.into(),
    }
}

fn bounded(field: &str, value: String, max: usize, required: bool) -> Result<String, ServiceError> {
    if required && value.is_empty() {
        return Err(invalid(
            "invalid_field",
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_field",
            format!("{field} must not contain control characters"),
        ));
    }
    if value.len() > max {
        return Err(invalid(
            "field_too_long",
            format!(
                "{field} is {} bytes; at most {max} are allowed",
                value.len()
            ),
        ));
    }
    Ok(value)
}

fn optional(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ServiceError> {
    value.map(|v| bounded(field, v, max, false)).transpose()
}

/// Parses an RFC 3339 time within years 1970–9999.
pub fn parse_time(field: &str, text: &str) -> Result<Timestamp, ServiceError> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|_| {
        invalid(
            "invalid_timestamp",
            format!("{field} must be an RFC 3339 time, e.g. 2026-01-31T09:30:00Z"),
        )
    })?;
    let utc = parsed.with_timezone(&Utc);
    if !(1970..=9999).contains(&utc.year()) {
        return Err(invalid(
            "invalid_timestamp",
            format!("{field} must be between 1970 and 9999"),
        ));
    }
    Ok(Timestamp::from_datetime(utc))
}

fn parse_action(action: String) -> Result<String, ServiceError> {
    let action = bounded("action", action, limits::ACTION, true)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-');
    if !action.chars().all(allowed) {
        return Err(invalid(
            "invalid_field",
            "action may only contain A-Z a-z 0-9 . _ : / -",
        ));
    }
    let lower = action.to_ascii_lowercase();
    if let Some(prefix) = RESERVED_ACTION_PREFIXES
        .iter()
        .find(|prefix| lower.starts_with(*prefix))
    {
        return Err(invalid(
            "reserved_action",
            format!(
                "actions starting with {prefix:?} are written by Annal itself (reads, exports, \
                 retention, access); choose another action"
            ),
        ));
    }
    Ok(action)
}

/// Action prefixes only Annal writes: a client posting one could forge a
/// purge record or an access event.
pub const RESERVED_ACTION_PREFIXES: [&str; 3] = ["audit.", "retention.", "access."];

/// Parses and seals the payload of one event (everything but its place in
/// the chain).
pub fn prepare(input: EventInput) -> Result<Pending, ServiceError> {
    if input.event_id.is_some_and(|id| id.get_version_num() == 8) {
        // Annal derives its own records' ids as version 8 (docs/FORMAT.md
        // §14): a client taking one could block that record.
        return Err(invalid(
            "reserved_event_id",
            "event_id of UUID version 8 are reserved for Annal's own records; use version 4 or 7",
        ));
    }
    let action = parse_action(input.action)?;
    let actor = Actor {
        id: bounded("actor.id", input.actor.id, limits::ID, true)?,
        kind: bounded("actor.type", input.actor.kind, limits::KIND, true)?,
        name: optional("actor.name", input.actor.name, limits::NAME)?,
        email: optional("actor.email", input.actor.email, limits::EMAIL)?,
    };
    let resource = Resource {
        kind: bounded("resource.type", input.resource.kind, limits::KIND, true)?,
        id: bounded("resource.id", input.resource.id, limits::ID, true)?,
    };
    let source_ip = input
        .source_ip
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| invalid("invalid_field", "source_ip must be an IPv4 or IPv6 address"))
        })
        .transpose()?;
    let payload = Payload {
        actor,
        resource,
        occurred_at: input
            .occurred_at
            .map(|t| parse_time("occurred_at", &t))
            .transpose()?,
        request_id: optional("request_id", input.request_id, limits::REQUEST_ID)?,
        source_ip,
        user_agent: optional("user_agent", input.user_agent, limits::USER_AGENT)?,
        outcome: input.outcome.map(|o| match o {
            OutcomeInput::Success => Outcome::Success,
            OutcomeInput::Failure => Outcome::Failure,
        }),
        before: shallow("before", input.before)?,
        after: shallow("after", input.after)?,
        metadata: shallow("metadata", input.metadata)?,
    };
    // JSON null in before/after/metadata is the same as absent (FORMAT.md).
    Ok(seal_payload(input.event_id, action, &payload.normalised()))
}

fn seal_payload(event_id: Option<Uuid>, action: String, payload: &Payload) -> Pending {
    let bytes = encode_payload(payload);
    let mut salt = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = Salt::from_bytes(salt);
    Pending {
        event_id: EventId::from_uuid(event_id.unwrap_or_else(Uuid::new_v4)),
        client_id: event_id.is_some(),
        action,
        commitment: commit_payload(&salt, &bytes),
        salt,
        actor_id: payload.actor.id.clone(),
        resource_type: payload.resource.kind.clone(),
        resource_id: payload.resource.id.clone(),
        request_id: payload.request_id.clone(),
        payload: bytes,
    }
}

/// An actor as served.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActorView {
    /// Actor id.
    pub id: String,
    /// Actor kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A resource as served.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceView {
    /// Resource kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource id.
    pub id: String,
}

/// A stored event with its hashes: enough to check the record, its
/// commitment and its chain link (see docs/FORMAT.md).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Position in the tenant's chain.
    pub seq: u64,
    /// Event id.
    pub event_id: Uuid,
    /// Server receive time (RFC 3339, microseconds, UTC).
    pub received_at: String,
    /// Action.
    pub action: String,
    /// Actor.
    pub actor: ActorView,
    /// Resource.
    pub resource: ResourceView,
    /// Client-reported time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Application request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Source IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// User agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeInput>,
    /// Value before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Leaf hash, hex.
    pub leaf_hash: String,
    /// Chain hash, hex.
    pub chain_hash: String,
    /// The hashed record (canonical header bytes), base64.
    pub record: String,
    /// Canonical payload bytes, base64.
    pub payload_bytes: String,
    /// Salt of the payload commitment, hex.
    pub salt: String,
}

impl EventView {
    fn from_stored(event: StoredEvent) -> Result<EventView, ServiceError> {
        let payload = decode_payload(&event.payload).map_err(|e| {
            ServiceError::Internal(anyhow::anyhow!(
                "stored payload of seq {} does not decode: {e}",
                event.seq
            ))
        })?;
        Ok(EventView {
            seq: event.seq.value(),
            event_id: event.event_id.as_uuid(),
            received_at: event.received_at.to_string(),
            action: event.action,
            actor: ActorView {
                id: payload.actor.id,
                kind: payload.actor.kind,
                name: payload.actor.name,
                email: payload.actor.email,
            },
            resource: ResourceView {
                kind: payload.resource.kind,
                id: payload.resource.id,
            },
            occurred_at: payload.occurred_at.map(|t| t.to_string()),
            request_id: payload.request_id,
            source_ip: payload.source_ip,
            user_agent: payload.user_agent,
            outcome: payload.outcome.map(|o| match o {
                Outcome::Success => OutcomeInput::Success,
                Outcome::Failure => OutcomeInput::Failure,
            }),
            before: payload.before,
            after: payload.after,
            metadata: payload.metadata,
            leaf_hash: event.leaf_hash.to_hex(),
            chain_hash: event.chain_hash.to_hex(),
            record: STANDARD.encode(&event.record),
            payload_bytes: STANDARD.encode(&event.payload),
            salt: event.salt.to_hex(),
        })
    }
}

/// The answer to an append, per event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Receipt {
    /// Position in the chain.
    pub seq: u64,
    /// Event id.
    pub event_id: Uuid,
    /// Server receive time.
    pub received_at: String,
    /// Leaf hash, hex.
    pub leaf_hash: String,
    /// Chain hash, hex.
    pub chain_hash: String,
    /// `created`, or `duplicate` when the event id had been stored before
    /// (the original record is returned).
    pub status: ReceiptStatus,
}

/// Whether an append stored something new.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    /// Stored now.
    Created,
    /// Stored by an earlier request with the same event id.
    Duplicate,
}

impl From<Appended> for Receipt {
    fn from(appended: Appended) -> Receipt {
        let e = appended.event;
        Receipt {
            seq: e.seq.value(),
            event_id: e.event_id.as_uuid(),
            received_at: e.received_at.to_string(),
            leaf_hash: e.leaf_hash.to_hex(),
            chain_hash: e.chain_hash.to_hex(),
            status: if appended.created {
                ReceiptStatus::Created
            } else {
                ReceiptStatus::Duplicate
            },
        }
    }
}

/// Filters of `GET /v1/events`, as given.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueryInput {
    /// Exact actor id.
    pub actor_id: Option<String>,
    /// Exact action, or a prefix ending in `*` (e.g. `salary.*`).
    pub action: Option<String>,
    /// Exact resource type.
    pub resource_type: Option<String>,
    /// Exact resource id.
    pub resource_id: Option<String>,
    /// Exact request id.
    pub request_id: Option<String>,
    /// Received at or after (RFC 3339).
    pub since: Option<String>,
    /// Received before (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of a trail query, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page {
    /// The events.
    pub events: Vec<EventView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn parse_cursor(cursor: &str) -> Result<Seq, ServiceError> {
    let bad = || invalid("invalid_cursor", "cursor is not one this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let seq = text.strip_prefix("seq:").ok_or_else(bad)?;
    seq.parse::<u64>().map(Seq::new).map_err(|_| bad())
}

fn make_cursor(before: Seq) -> String {
    URL_SAFE_NO_PAD.encode(format!("seq:{}", before.value()))
}

fn parse_filter(input: &QueryInput) -> Result<(Filter, u32), ServiceError> {
    let exact =
        |field: &str, v: &Option<String>, max: usize| -> Result<Option<String>, ServiceError> {
            match v {
                Some(v) if v.is_empty() || v.len() > max => Err(invalid(
                    "invalid_query",
                    format!("{field} must be 1 to {max} bytes"),
                )),
                Some(v) if v.chars().any(char::is_control) => Err(invalid(
                    "invalid_query",
                    format!("{field} must not contain control characters"),
                )),
                other => Ok(other.clone()),
            }
        };
    let action = match &input.action {
        None => None,
        Some(a) if a.len() > limits::ACTION + 1 || a.is_empty() => {
            return Err(invalid(
                "invalid_query",
                "action filter is empty or too long",
            ));
        }
        Some(a) if a.chars().any(char::is_control) => {
            return Err(invalid(
                "invalid_query",
                "action filter must not contain control characters",
            ));
        }
        Some(a) => match a.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Some(ActionMatch::Prefix(prefix.to_owned())),
            Some(_) => {
                return Err(invalid(
                    "invalid_query",
                    "only a trailing * is allowed in action",
                ));
            }
            None if a.contains('*') => {
                return Err(invalid(
                    "invalid_query",
                    "only a trailing * is allowed in action",
                ));
            }
            None => Some(ActionMatch::Exact(a.clone())),
        },
    };
    let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            "invalid_query",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let filter = Filter {
        actor_id: exact("actor_id", &input.actor_id, limits::ID)?,
        action,
        resource_type: exact("resource_type", &input.resource_type, limits::KIND)?,
        resource_id: exact("resource_id", &input.resource_id, limits::ID)?,
        request_id: exact("request_id", &input.request_id, limits::REQUEST_ID)?,
        since: input
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: input
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        before_seq: input.cursor.as_deref().map(parse_cursor).transpose()?,
    };
    Ok((filter, limit))
}

/// Appending to and reading from tenants' trails.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    appender: Appender,
    clock: SharedClock,
    limiter: IngestLimiter,
}

impl Ledger {
    /// A ledger over `store`; `checkpointer` hears of every commit.
    pub fn new(
        store: Store,
        clock: SharedClock,
        max_group: usize,
        checkpointer: Option<Checkpointer>,
    ) -> Ledger {
        Ledger {
            appender: Appender::new(store.clone(), clock.clone(), max_group, checkpointer),
            store,
            clock,
            limiter: IngestLimiter::unlimited(),
        }
    }

    /// The same ledger, limiting how fast each API key may append.
    pub fn with_ingest_limiter(self, limiter: IngestLimiter) -> Ledger {
        Ledger { limiter, ..self }
    }

    /// The clock this ledger dates records with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Appends events (all or nothing) to the caller's tenant; answers after
    /// the commit.
    pub async fn append(
        &self,
        who: &Authorized<WriteEvents>,
        events: Vec<Pending>,
    ) -> Result<Vec<Receipt>, ServiceError> {
        if let Some(key) = who.principal().key_id() {
            self.limiter.check(key, events.len())?;
        }
        let appended = self.appender.append(who.tenant(), events).await?;
        Ok(appended.into_iter().map(Receipt::from).collect())
    }

    /// One page of the caller's trail, newest first; recorded as `audit.read`.
    pub async fn query(
        &self,
        who: &Authorized<ReadEvents>,
        input: &QueryInput,
    ) -> Result<Page, ServiceError> {
        let (filter, limit) = parse_filter(input)?;
        let found = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            let found = rows::query(&tx, &filter, limit).await?;
            tx.commit().await?;
            found
        };
        let next_cursor = match found.last() {
            Some(last) if found.len() == limit as usize && last.seq.value() > 0 => {
                Some(make_cursor(last.seq))
            }
            _ => None,
        };
        let events = found
            .into_iter()
            .map(EventView::from_stored)
            .collect::<Result<Vec<_>, _>>()?;
        let mut shown = serde_json::to_value(input).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut shown {
            map.retain(|_, v| !v.is_null());
        }
        self.record_read(
            who.principal(),
            "trail",
            json!({ "filter": shown, "rows": events.len() }),
            "audit.read",
        )
        .await?;
        Ok(Page {
            events,
            next_cursor,
        })
    }

    /// The caller's event at `seq`; recorded as `audit.read`.
    pub async fn event(
        &self,
        who: &Authorized<ReadEvents>,
        seq: Seq,
    ) -> Result<EventView, ServiceError> {
        let (found, boundary) = {
            let mut conn = self.store.conn().await?;
            let tx = conn.tenant(who.tenant()).await?;
            let found = rows::by_seq(&tx, seq).await?;
            let boundary = match found {
                Some(_) => 0,
                None => super::purged_before(&tx).await?,
            };
            tx.commit().await?;
            (found, boundary)
        };
        let rows_read = usize::from(found.is_some());
        self.record_read(
            who.principal(),
            "event",
            json!({ "filter": { "seq": seq.value() }, "rows": rows_read }),
            "audit.read",
        )
        .await?;
        let event = match found {
            Some(event) => event,
            None if seq.value() < boundary => {
                return Err(super::purged(&format!("seq {}", seq.value()), boundary));
            }
            None => return Err(ServiceError::NotFound("event")),
        };
        EventView::from_stored(event)
    }

    /// Appends the `audit.read` (or `audit.export`) event of a read, and
    /// waits for it: an answer is never returned for a read that is not on
    /// the record.
    pub(crate) async fn record_read(
        &self,
        reader: &Principal,
        what: &str,
        metadata: Value,
        action: &str,
    ) -> Result<(), ServiceError> {
        let payload = Payload {
            outcome: Some(Outcome::Success),
            metadata: Some(metadata),
            ..Payload::new(
                reader.actor(),
                Resource {
                    kind: "audit_trail".into(),
                    id: what.into(),
                },
            )
        };
        let pending = seal_payload(None, action.into(), &payload);
        self.appender.append(reader.tenant(), vec![pending]).await?;
        Ok(())
    }

    /// Appends an event Annal itself writes about `tenant` (a policy
    /// change, a purge) under a fixed `event_id`, so that retrying after a
    /// crash finds the first one instead of writing a second. Returns its
    /// seq.
    pub(crate) async fn record_system(
        &self,
        tenant: TenantId,
        event_id: Uuid,
        action: &str,
        payload: &Payload,
    ) -> Result<u64, ServiceError> {
        let pending = seal_payload(Some(event_id), action.into(), payload);
        let appended = self.appender.append(tenant, vec![pending]).await?;
        appended
            .first()
            .map(|a| a.event.seq.value())
            .ok_or_else(|| ServiceError::Unavailable("the event was not appended".into()))
    }
}
