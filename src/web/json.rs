//! The JSON shapes of the HTTP API and their conversions from the domain
//! types: the routes and fields of the ZooKeeper-based system gavel is
//! compared with, so that its clients work unchanged. Requests are read
//! from a `serde_json::Value` field by field, so that every problem gets
//! its own clear message and fields gavel does not use are ignored.

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auction::{AcceptedBid, AuctionEvent, AuctionInfo, CreateAuction, EventKind};

/// The largest amount a request may carry: the largest whole number a JSON
/// number holds exactly in every client (2^53 - 1, JavaScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// The seller of auctions created over HTTP when the request names none
/// (the compared system has no sellers; gavel's create needs one).
pub const DEFAULT_SELLER: &str = "http";

/// An auction item, with what a list of auctions shows of each: its
/// seller, price so far, bids and, once it is over, its winner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub description: String,
    pub minimum_bid: u64,
    pub expiry_time: String,
    pub created_at: String,
    /// Empty for the cluster's own auction.
    pub seller: String,
    /// The highest bid so far; 0 while nobody bid.
    pub current_price: u64,
    /// Accepted bids so far.
    pub bids: u64,
    /// Who won, once it is over and somebody bid (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// True once its seller cancelled it (absent otherwise), so that a
    /// reader tells a cancelled auction from one that ended unsold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

impl From<&AuctionInfo> for Item {
    fn from(info: &AuctionInfo) -> Self {
        let won = info.over && !info.cancelled && !info.highest_bidder.is_empty();
        Item {
            id: info.auction_id.clone(),
            name: info.title.clone(),
            description: info.description.clone(),
            minimum_bid: info.minimum_amount,
            expiry_time: rfc3339(info.ends_at_unix_ms),
            created_at: rfc3339(info.created_at_unix_ms),
            seller: info.seller.clone(),
            current_price: info.highest_amount,
            bids: info.accepted_bids,
            winner: won.then(|| info.highest_bidder.clone()),
            cancelled: info.cancelled,
        }
    }
}

/// An accepted bid. Its id is the revision (log index) that accepted it:
/// unique in the cluster, and the id of its server-sent event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BidJson {
    pub id: String,
    pub participant_id: String,
    pub auction_item_id: String,
    pub bid_price: u64,
    pub timestamp: String,
}

impl BidJson {
    pub fn of(auction_id: &str, bid: &AcceptedBid) -> Self {
        BidJson {
            id: bid.revision.to_string(),
            participant_id: bid.bidder.clone(),
            auction_item_id: auction_id.to_string(),
            bid_price: bid.amount,
            timestamp: rfc3339(bid.at_unix_ms),
        }
    }
}

/// The answer to an accepted bid: the bid, and a sentence as the compared
/// system answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlacedBid {
    #[serde(flatten)]
    pub bid: BidJson,
    pub message: String,
}

/// `GET /auctions/{id}/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuctionStatus {
    pub auction: Item,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_bid: Option<BidJson>,
    /// `active` or `expired` (over: past its end, closed or cancelled).
    pub status: &'static str,
    pub time_remaining: String,
}

impl AuctionStatus {
    pub fn of(info: &AuctionInfo, highest_bid: Option<BidJson>) -> Self {
        let remaining_ms = if info.over { 0 } else { info.ends_at_unix_ms.saturating_sub(info.now_unix_ms) };
        AuctionStatus {
            auction: Item::from(info),
            highest_bid,
            status: if info.over { "expired" } else { "active" },
            time_remaining: go_duration(remaining_ms),
        }
    }
}

/// The final state of a closed auction, as its `closed` event carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClosedAuction {
    pub auction: Item,
    /// The winner's name; absent when nobody bid (or it was cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winning_bid_price: Option<u64>,
    pub cancelled: bool,
}

impl From<&AuctionInfo> for ClosedAuction {
    fn from(info: &AuctionInfo) -> Self {
        let won = info.highest_amount > 0 && !info.highest_bidder.is_empty();
        ClosedAuction {
            auction: Item::from(info),
            winner: won.then(|| info.highest_bidder.clone()),
            winning_bid_price: won.then_some(info.highest_amount),
            cancelled: info.cancelled,
        }
    }
}

/// An event as the event stream carries it, and `gavel watch --json` prints
/// it, in one vocabulary: its name (the stream's event type), its revision
/// (the stream's event id) and its data, of the REST API's shapes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventJson {
    /// `opened`, `bid`, `closed` or `progress`.
    pub event: &'static str,
    pub id: String,
    pub data: EventData,
}

/// What an event carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Opened(Item),
    Bid(BidJson),
    Closed(ClosedAuction),
    /// Everything up to `revision` was sent.
    Progress {
        revision: u64,
    },
}

impl From<&AuctionEvent> for EventJson {
    fn from(event: &AuctionEvent) -> Self {
        let (name, data) = match &event.kind {
            EventKind::Opened(info) => ("opened", EventData::Opened(Item::from(info))),
            EventKind::BidAccepted(bid) => ("bid", EventData::Bid(BidJson::of(&event.auction_id, bid))),
            EventKind::Closed(info) => ("closed", EventData::Closed(ClosedAuction::from(info))),
            EventKind::Progress => ("progress", EventData::Progress { revision: event.revision }),
        };
        EventJson { event: name, id: event.revision.to_string(), data }
    }
}

/// Every error the API answers: a stable code a program branches on, and a
/// sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// What is wrong with a request body, before the service sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyProblem {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// A field given twice: which value was meant is unknown.
    #[error("{field} is given twice")]
    Repeated { field: String },
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} must be a {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("{field} must be a whole number, not {given}")]
    NotWhole { field: &'static str, given: String },
    #[error("{field} must not be negative")]
    Negative { field: &'static str },
    #[error("{field} must be at most {MAX_AMOUNT}")]
    TooLarge { field: &'static str },
    #[error("{field} must be an RFC 3339 time such as 2030-01-31T12:00:00Z, not {given:?}")]
    NotATime { field: &'static str, given: String },
    #[error("{field} must be a duration above 0 such as 10m, 2h or 1h30m, not {given:?}")]
    NotADuration { field: &'static str, given: String },
    /// Two fields that say the same thing two ways, both given.
    #[error("give {0} or {1}, not both")]
    EitherOr(&'static str, &'static str),
    /// Neither of two fields, one of which is required.
    #[error("give {0} or {1}")]
    NeitherOf(&'static str, &'static str),
}

impl BodyProblem {
    /// The error code the API answers it with.
    pub fn code(&self) -> &'static str {
        match self {
            BodyProblem::NotJson(_) | BodyProblem::NotAnObject | BodyProblem::Repeated { .. } => "malformed_json",
            BodyProblem::NotWhole { .. } | BodyProblem::Negative { .. } | BodyProblem::TooLarge { .. } => {
                "invalid_amount"
            }
            BodyProblem::Missing { .. }
            | BodyProblem::WrongType { .. }
            | BodyProblem::NotATime { .. }
            | BodyProblem::NotADuration { .. }
            | BodyProblem::EitherOr(..)
            | BodyProblem::NeitherOf(..) => "invalid_field",
        }
    }
}

/// `POST /auctions/{id}/bids`: who bids how much. A `timestamp` or an
/// `auction_item_id` the client sends is ignored: the leader stamps the
/// time, and the path names the auction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidRequest {
    pub participant_id: String,
    pub bid_price: u64,
}

impl BidRequest {
    pub fn parse(body: &[u8]) -> Result<Self, BodyProblem> {
        let fields = object(body)?;
        Ok(BidRequest {
            participant_id: string(&fields, "participant_id")?
                .ok_or(BodyProblem::Missing { field: "participant_id" })?,
            bid_price: amount(&fields, "bid_price")?.ok_or(BodyProblem::Missing { field: "bid_price" })?,
        })
    }
}

/// `POST /auctions`: a new auction, which ends at an absolute time or
/// after a duration from when the leader takes it (a retry with the same
/// `Idempotency-Key` is the same request either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub name: String,
    pub description: String,
    pub minimum_bid: u64,
    pub end: End,
    /// A gavel extension: the seller, who may not bid on it.
    pub seller: String,
}

/// When a new auction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `expiry_time`, in Unix milliseconds.
    At(i64),
    /// `duration`, from when the leader sequences the create.
    After(std::time::Duration),
}

impl CreateRequest {
    pub fn parse(body: &[u8]) -> Result<Self, BodyProblem> {
        let fields = object(body)?;
        let end = match (string(&fields, "expiry_time")?, string(&fields, "duration")?) {
            (Some(expiry), None) => End::At(
                parse_rfc3339(&expiry).ok_or(BodyProblem::NotATime { field: "expiry_time", given: expiry.clone() })?,
            ),
            (None, Some(duration)) => End::After(
                humantime::parse_duration(&duration)
                    .ok()
                    .filter(|duration| !duration.is_zero())
                    .ok_or(BodyProblem::NotADuration { field: "duration", given: duration.clone() })?,
            ),
            (Some(_), Some(_)) => return Err(BodyProblem::EitherOr("expiry_time", "duration")),
            (None, None) => return Err(BodyProblem::NeitherOf("expiry_time", "duration")),
        };
        Ok(CreateRequest {
            name: string(&fields, "name")?.ok_or(BodyProblem::Missing { field: "name" })?,
            description: string(&fields, "description")?.unwrap_or_default(),
            minimum_bid: amount(&fields, "minimum_bid")?.unwrap_or(0),
            end,
            seller: string(&fields, "seller")?.unwrap_or_else(|| DEFAULT_SELLER.to_string()),
        })
    }

    /// The replicated create; the client library fills in the session.
    pub fn to_create(&self) -> CreateAuction {
        CreateAuction {
            max_open_per_seller: 0,
            name_digest: None,
            seller: self.seller.clone(),
            title: self.name.clone(),
            description: self.description.clone(),
            minimum_amount: self.minimum_bid,
            duration_ms: match self.end {
                End::After(duration) => u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                End::At(_) => 0,
            },
            ends_at_unix_ms: match self.end {
                End::At(at) => at,
                End::After(_) => 0,
            },
            client_id: String::new(),
            request_id: 0,
            at_unix_ms: 0,
            max_auctions: 0,
        }
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, BodyProblem> {
    match serde_json::from_slice::<Fields>(body) {
        Ok(Fields { fields, repeated: None }) => Ok(fields),
        Ok(Fields { repeated: Some(field), .. }) => Err(BodyProblem::Repeated { field }),
        // JSON, but not an object.
        Err(error) if error.classify() == serde_json::error::Category::Data => Err(BodyProblem::NotAnObject),
        Err(error) => Err(BodyProblem::NotJson(error.to_string())),
    }
}

/// A JSON object's top-level fields, and the first one it gives twice, if
/// any (a map would keep the last value, and which was meant is unknown).
struct Fields {
    fields: Map<String, Value>,
    repeated: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Fields, A::Error> {
                let mut fields = Map::new();
                let mut repeated = None;
                while let Some((field, value)) = access.next_entry::<String, Value>()? {
                    if fields.contains_key(&field) {
                        repeated.get_or_insert(field);
                    } else {
                        fields.insert(field, value);
                    }
                }
                Ok(Fields { fields, repeated })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A string field; absent and `null` are both `None`.
fn string(fields: &Map<String, Value>, field: &'static str) -> Result<Option<String>, BodyProblem> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(BodyProblem::WrongType { field, expected: "string" }),
    }
}

/// An amount: a JSON number with a whole value (`100` and `100.0` alike),
/// from 0 to [`MAX_AMOUNT`].
fn amount(fields: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, BodyProblem> {
    let number = match fields.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number,
        Some(_) => return Err(BodyProblem::WrongType { field, expected: "number" }),
    };
    if let Some(whole) = number.as_u64() {
        return if whole <= MAX_AMOUNT { Ok(Some(whole)) } else { Err(BodyProblem::TooLarge { field }) };
    }
    if number.as_i64().is_some() {
        return Err(BodyProblem::Negative { field });
    }
    let value = number.as_f64().unwrap_or(f64::NAN);
    if value.fract() != 0.0 || !value.is_finite() {
        return Err(BodyProblem::NotWhole { field, given: number.to_string() });
    }
    if value < 0.0 {
        return Err(BodyProblem::Negative { field });
    }
    if value > MAX_AMOUNT as f64 {
        return Err(BodyProblem::TooLarge { field });
    }
    Ok(Some(value as u64))
}

/// A time in RFC 3339, in UTC with milliseconds when it has any.
pub fn rfc3339(unix_ms: i64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Milliseconds since the epoch of an RFC 3339 time, with any offset.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A duration as Go prints one, to the second (`1h2m3s`, `1m30s`, `45s`,
/// `0s`): the compared system's `time_remaining`. Rounded up, so that an
/// auction still running never shows `0s`.
pub fn go_duration(ms: i64) -> String {
    let seconds = if ms <= 0 { 0 } else { (ms as u64).div_ceil(1000) };
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(body: &str) -> Result<BidRequest, BodyProblem> {
        BidRequest::parse(body.as_bytes())
    }

    #[test]
    fn amounts_are_whole_json_numbers() {
        let amount_of = |text: &str| bid(&format!(r#"{{"participant_id": "ann", "bid_price": {text}}}"#));
        assert_eq!(amount_of("100").map(|bid| bid.bid_price), Ok(100));
        assert_eq!(amount_of("100.0").map(|bid| bid.bid_price), Ok(100));
        assert_eq!(amount_of("1e2").map(|bid| bid.bid_price), Ok(100));
        assert_eq!(amount_of("0").map(|bid| bid.bid_price), Ok(0));
        assert_eq!(amount_of("9007199254740991").map(|bid| bid.bid_price), Ok(MAX_AMOUNT));

        let problem = amount_of("100.5").unwrap_err();
        assert_eq!(problem.code(), "invalid_amount");
        assert_eq!(problem.to_string(), "bid_price must be a whole number, not 100.5");
        assert_eq!(amount_of("-1").unwrap_err(), BodyProblem::Negative { field: "bid_price" });
        assert_eq!(amount_of("-1.0").unwrap_err(), BodyProblem::Negative { field: "bid_price" });
        assert_eq!(amount_of("9007199254740992").unwrap_err(), BodyProblem::TooLarge { field: "bid_price" });
        assert_eq!(amount_of("1e300").unwrap_err(), BodyProblem::TooLarge { field: "bid_price" });
        assert_eq!(amount_of("18446744073709551616").unwrap_err(), BodyProblem::TooLarge { field: "bid_price" });
        assert_eq!(
            amount_of(r#""100""#).unwrap_err(),
            BodyProblem::WrongType { field: "bid_price", expected: "number" }
        );
    }

    #[test]
    fn a_bid_ignores_fields_gavel_does_not_use() {
        let parsed = bid(r#"{"participant_id": "ann", "bid_price": 5, "timestamp": "1999-01-01T00:00:00Z",
                             "auction_item_id": "elsewhere", "id": 7}"#);
        assert_eq!(parsed, Ok(BidRequest { participant_id: "ann".into(), bid_price: 5 }));
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert_eq!(bid("{").unwrap_err().code(), "malformed_json");
        assert_eq!(bid("[1]").unwrap_err(), BodyProblem::NotAnObject);
        assert_eq!(bid("5").unwrap_err(), BodyProblem::NotAnObject);
        let repeated = bid(r#"{"participant_id": "ann", "bid_price": 5, "bid_price": 500}"#).unwrap_err();
        assert_eq!(repeated, BodyProblem::Repeated { field: "bid_price".into() });
        assert_eq!((repeated.code(), repeated.to_string().as_str()), ("malformed_json", "bid_price is given twice"));
        // Only the top level counts: a nested object is nobody's field.
        assert!(bid(r#"{"participant_id": "ann", "bid_price": 5, "x": {"a": 1, "a": 2}}"#).is_ok());
        assert_eq!(bid(r#"{"bid_price": 5}"#).unwrap_err(), BodyProblem::Missing { field: "participant_id" });
        assert_eq!(
            bid(r#"{"participant_id": 5, "bid_price": 5}"#).unwrap_err(),
            BodyProblem::WrongType { field: "participant_id", expected: "string" }
        );
    }

    #[test]
    fn a_create_carries_its_absolute_end() {
        let body = r#"{"name": "lamp", "description": "brass", "minimum_bid": 10.0,
                       "expiry_time": "2030-01-31T13:00:00+01:00"}"#;
        let create = CreateRequest::parse(body.as_bytes()).expect("parses");
        assert_eq!(create.end, End::At(1_896_091_200_000));
        assert_eq!(create.seller, DEFAULT_SELLER);
        let replicated = create.to_create();
        assert_eq!((replicated.duration_ms, replicated.ends_at_unix_ms), (0, 1_896_091_200_000));
        assert_eq!(replicated.minimum_amount, 10);

        let problem = CreateRequest::parse(br#"{"name": "lamp", "expiry_time": "tomorrow"}"#).unwrap_err();
        assert_eq!(problem, BodyProblem::NotATime { field: "expiry_time", given: "tomorrow".into() });
    }

    /// Or a duration from when the leader takes it, whatever today's date:
    /// one of the two, not both nor neither.
    #[test]
    fn a_create_may_carry_a_duration_instead() {
        let create = CreateRequest::parse(br#"{"name": "lamp", "duration": "1h30m"}"#).expect("parses");
        let replicated = create.to_create();
        assert_eq!((replicated.duration_ms, replicated.ends_at_unix_ms), (5_400_000, 0));
        let parse = |body: &str| CreateRequest::parse(body.as_bytes()).unwrap_err();
        assert_eq!(
            parse(r#"{"name": "lamp", "duration": "10m", "expiry_time": "2030-01-31T12:00:00Z"}"#),
            BodyProblem::EitherOr("expiry_time", "duration")
        );
        assert_eq!(parse(r#"{"name": "lamp"}"#), BodyProblem::NeitherOf("expiry_time", "duration"));
        for bad in ["0s", "soon", "-5m"] {
            assert_eq!(
                parse(&format!(r#"{{"name": "lamp", "duration": "{bad}"}}"#)),
                BodyProblem::NotADuration { field: "duration", given: bad.into() }
            );
        }
    }

    /// An item names its winner once it is over and somebody bid; not while
    /// it runs, nor when it ended unsold or was cancelled.
    #[test]
    fn an_item_names_its_winner_once_over() {
        let info = crate::auction::AuctionInfo {
            auction_id: "a1".into(),
            seller: "sam".into(),
            title: "lamp".into(),
            description: String::new(),
            minimum_amount: 5,
            created_at_unix_ms: 0,
            ends_at_unix_ms: 60_000,
            over: false,
            highest_amount: 40,
            highest_bidder: "ann".into(),
            accepted_bids: 3,
            now_unix_ms: 1_000,
            revision: 9,
            cancelled: false,
        };
        let item = Item::from(&info);
        assert_eq!((item.seller.as_str(), item.current_price, item.bids, item.winner), ("sam", 40, 3, None));
        let over = crate::auction::AuctionInfo { over: true, ..info.clone() };
        assert_eq!(Item::from(&over).winner.as_deref(), Some("ann"));
        let unsold = crate::auction::AuctionInfo { highest_bidder: String::new(), highest_amount: 0, ..over.clone() };
        assert_eq!(Item::from(&unsold).winner, None);
        let cancelled = crate::auction::AuctionInfo { cancelled: true, ..unsold };
        assert_eq!(Item::from(&cancelled).winner, None);
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(1_896_091_200_000), "2030-01-31T12:00:00Z");
        assert_eq!(rfc3339(1_896_091_200_250), "2030-01-31T12:00:00.25Z");
        assert_eq!(parse_rfc3339(&rfc3339(1_896_091_200_250)), Some(1_896_091_200_250));
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(90_000), "1m30s");
        assert_eq!(go_duration(3_723_000), "1h2m3s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(45_000), "45s");
        assert_eq!(go_duration(1), "1s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(-5), "0s");
    }
}
