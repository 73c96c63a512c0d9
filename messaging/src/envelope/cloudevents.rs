//! CloudEvents binary-mode attributes as AMQP headers (`cloudEvents_` prefix).

use std::collections::BTreeMap;

use super::error::DecodeError;
use super::timestamp::Timestamp;

/// `cloudEvents_id`: the event ID.
pub const ID: &str = "cloudEvents_id";
/// `cloudEvents_type`: the event type.
pub const TYPE: &str = "cloudEvents_type";
/// `cloudEvents_source`: the producing service.
pub const SOURCE: &str = "cloudEvents_source";
/// `cloudEvents_specversion`: always [`SPEC_VERSION`].
pub const SPECVERSION: &str = "cloudEvents_specversion";
/// `cloudEvents_time`: the event timestamp, RFC 3339.
pub const TIME: &str = "cloudEvents_time";
/// `cloudEvents_subject`: the aggregate ID.
pub const SUBJECT: &str = "cloudEvents_subject";
/// The CloudEvents specification version written.
pub const SPEC_VERSION: &str = "1.0";

/// The CloudEvents attributes carried in binary mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudEventAttributes {
    /// `id`.
    pub id: String,
    /// `type`.
    pub event_type: String,
    /// `source`.
    pub source: String,
    /// `specversion`.
    pub spec_version: String,
    /// `time`, if present.
    pub time: Option<Timestamp>,
    /// `subject`, if present.
    pub subject: Option<String>,
}

impl CloudEventAttributes {
    /// The header pairs of binary mode, in a fixed order.
    pub fn to_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (ID.to_owned(), self.id.clone()),
            (TYPE.to_owned(), self.event_type.clone()),
            (SOURCE.to_owned(), self.source.clone()),
            (SPECVERSION.to_owned(), self.spec_version.clone()),
        ];
        if let Some(t) = self.time {
            out.push((TIME.to_owned(), t.to_string()));
        }
        if let Some(s) = &self.subject {
            out.push((SUBJECT.to_owned(), s.clone()));
        }
        out
    }

    /// Reads the attributes from a header map.
    ///
    /// # Errors
    ///
    /// [`DecodeError::MissingHeader`] when `id`, `type`, `source` or `specversion` is absent;
    /// [`DecodeError::InvalidHeader`] when `time` is not RFC 3339 or `specversion` is not 1.x.
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Result<Self, DecodeError> {
        let required = |name: &'static str| {
            headers
                .get(name)
                .cloned()
                .ok_or(DecodeError::MissingHeader { name })
        };
        let spec_version = required(SPECVERSION)?;
        if !spec_version.starts_with("1.") {
            return Err(DecodeError::InvalidHeader { name: SPECVERSION });
        }
        let time = match headers.get(TIME) {
            Some(t) => Some(
                t.parse()
                    .map_err(|_| DecodeError::InvalidHeader { name: TIME })?,
            ),
            None => None,
        };
        Ok(Self {
            id: required(ID)?,
            event_type: required(TYPE)?,
            source: required(SOURCE)?,
            spec_version,
            time,
            subject: headers.get(SUBJECT).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> CloudEventAttributes {
        CloudEventAttributes {
            id: "e-1".to_owned(),
            event_type: "user.created".to_owned(),
            source: "accounts".to_owned(),
            spec_version: SPEC_VERSION.to_owned(),
            time: "2024-07-01T10:00:00.123Z".parse().ok(),
            subject: Some("user-1".to_owned()),
        }
    }

    #[test]
    fn headers_round_trip() {
        let headers: BTreeMap<String, String> = attrs().to_headers().into_iter().collect();
        assert_eq!(headers[SPECVERSION], "1.0");
        assert_eq!(headers[TIME], "2024-07-01T10:00:00.123Z");
        assert_eq!(
            CloudEventAttributes::from_headers(&headers).unwrap(),
            attrs()
        );
    }

    #[test]
    fn typed_errors() {
        let mut headers: BTreeMap<String, String> = attrs().to_headers().into_iter().collect();
        headers.insert(TIME.to_owned(), "yesterday".to_owned());
        assert!(matches!(
            CloudEventAttributes::from_headers(&headers),
            Err(DecodeError::InvalidHeader { name: TIME })
        ));
        headers.insert(SPECVERSION.to_owned(), "0.3".to_owned());
        assert!(matches!(
            CloudEventAttributes::from_headers(&headers),
            Err(DecodeError::InvalidHeader { name: SPECVERSION })
        ));
        headers.remove(SPECVERSION);
        assert!(matches!(
            CloudEventAttributes::from_headers(&headers),
            Err(DecodeError::MissingHeader { name: SPECVERSION })
        ));
    }
}
