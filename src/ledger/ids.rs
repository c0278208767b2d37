//! Identifiers and sequence numbers: the typed names of tenants, events and
//! positions in a tenant's log.
//!
//! Owns parsing and formatting of those values; must never generate ids (that
//! needs randomness, which the ledger core does not have).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a UUID was given where a tenant or event id belongs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid id: {0}")]
pub struct ParseIdError(#[from] uuid::Error);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The 16 raw bytes (RFC 9562 byte order), as they appear in the
            /// canonical encoding.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            /// Lowercase hyphenated form, e.g. `0f8fad5b-d9cb-469f-a165-70867728950e`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self(Uuid::parse_str(s)?))
            }
        }
    };
}

uuid_id! {
    /// The organisation a record belongs to; every log is per tenant.
    TenantId
}

uuid_id! {
    /// The client-chosen id of an event, unique per tenant (the idempotency key).
    EventId
}

/// A record's position in its tenant's log: 0, 1, 2, … with no gaps.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(u64);

impl Seq {
    /// The first position of every log.
    pub const ZERO: Seq = Seq(0);

    /// Wraps a sequence number.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The number inside.
    pub const fn value(&self) -> u64 {
        self.0
    }

    /// The position after this one.
    ///
    /// Saturates at `u64::MAX` rather than wrapping: no log can hold 2^64
    /// records, and wrapping would silently reuse seq 0. Use
    /// [`Seq::checked_next`] where the limit must be detected.
    pub const fn next(&self) -> Seq {
        Seq(self.0.saturating_add(1))
    }

    /// The position after this one, or `None` at `u64::MAX`.
    pub const fn checked_next(&self) -> Option<Seq> {
        match self.0.checked_add(1) {
            Some(v) => Some(Seq(v)),
            None => None,
        }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Seq {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_and_parse_as_hyphenated_uuids() {
        let text = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let id: TenantId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert!("not-a-uuid".parse::<EventId>().is_err());
    }

    #[test]
    fn seq_serialises_as_a_number_and_saturates() {
        assert_eq!(serde_json::to_string(&Seq::new(42)).unwrap(), "42");
        assert_eq!(Seq::new(1).next(), Seq::new(2));
        assert_eq!(Seq::new(u64::MAX).next(), Seq::new(u64::MAX));
        assert_eq!(Seq::new(u64::MAX).checked_next(), None);
    }
}
