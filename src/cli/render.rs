//! JSON for scripts (`--json`): one serde type per shape printed, and one
//! renderer for all of them.
//!
//! Keys print sorted, as they always have: [`json_line`] goes through
//! `serde_json::Value`, whose map keeps its keys in order, so scripts and
//! tests see the same bytes whatever order the fields are declared in.

use serde::Serialize;

use gavel::auction::{AcceptedBid, AuctionInfo, CreateOutcome, Reason, render};
use gavel::replication::{NodeStatus, RecordView, epoch_number};

/// `value` as one line of JSON.
pub fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).expect("the JSON types hold only strings, numbers and booleans").to_string()
}

/// An auction, as `list`, `show` and `watch` print it.
#[derive(Serialize)]
pub struct AuctionJson<'a> {
    auction_id: &'a str,
    seller: &'a str,
    title: &'a str,
    description: &'a str,
    minimum_amount: u64,
    created_at_unix_ms: i64,
    ends_at_unix_ms: i64,
    over: bool,
    highest_amount: u64,
    highest_bidder: &'a str,
    accepted_bids: u64,
    now_unix_ms: i64,
    revision: u64,
    cancelled: bool,
}

impl<'a> From<&'a AuctionInfo> for AuctionJson<'a> {
    fn from(info: &'a AuctionInfo) -> Self {
        AuctionJson {
            auction_id: &info.auction_id,
            seller: &info.seller,
            title: &info.title,
            description: &info.description,
            minimum_amount: info.minimum_amount,
            created_at_unix_ms: info.created_at_unix_ms,
            ends_at_unix_ms: info.ends_at_unix_ms,
            over: info.over,
            highest_amount: info.highest_amount,
            highest_bidder: &info.highest_bidder,
            accepted_bids: info.accepted_bids,
            now_unix_ms: info.now_unix_ms,
            revision: info.revision,
            cancelled: info.cancelled,
        }
    }
}

/// One accepted bid, as `history --json` prints it.
#[derive(Serialize)]
pub struct HistoryBidJson<'a> {
    bidder: &'a str,
    amount: u64,
    at_unix_ms: i64,
    revision: u64,
}

impl<'a> From<&'a AcceptedBid> for HistoryBidJson<'a> {
    fn from(bid: &'a AcceptedBid) -> Self {
        HistoryBidJson { bidder: &bid.bidder, amount: bid.amount, at_unix_ms: bid.at_unix_ms, revision: bid.revision }
    }
}

/// The service's answer to `create --json`.
#[derive(Serialize)]
pub struct CreateJson<'a> {
    /// `SUCCESS`, `FAIL` or `EXCEPTION`.
    outcome: String,
    /// The reason in English; empty on success.
    reason: String,
    /// The reason's stable code, for scripts; null on success.
    reason_code: Option<&'static str>,
    auction_id: &'a str,
}

impl<'a> From<&'a CreateOutcome> for CreateJson<'a> {
    fn from(outcome: &'a CreateOutcome) -> Self {
        CreateJson {
            outcome: format!("{:?}", outcome.verdict).to_uppercase(),
            reason: render(&outcome.reason),
            reason_code: outcome.reason.as_ref().map(Reason::code),
            auction_id: &outcome.auction_id,
        }
    }
}

/// The cluster, as `status --json` prints it.
#[derive(Serialize)]
pub struct StatusJson<'a> {
    leader: &'a str,
    /// The leader's successors, in order.
    leader_queue: &'a [String],
    record: Option<RecordJson<'a>>,
    nodes: Vec<NodeJson<'a>>,
}

/// The membership record as the leader holds it.
#[derive(Serialize)]
struct RecordJson<'a> {
    version: u64,
    members: &'a [String],
}

/// One member: its role and position, or only `not answering`.
#[derive(Serialize)]
struct NodeJson<'a> {
    node: &'a str,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
}

impl<'a> StatusJson<'a> {
    /// The leader's view, and each member's answer (`None`: it did not answer).
    pub fn new(leader: &'a NodeStatus, members: &'a [(String, Option<NodeStatus>)]) -> Self {
        let nodes = members
            .iter()
            .map(|(member, status)| match status {
                Some(status) => NodeJson {
                    node: member,
                    role: format!("{:?}", status.role).to_lowercase(),
                    epoch: Some(epoch_number(status.epoch)),
                    last_index: Some(status.last.index),
                    pid: Some(status.pid),
                },
                None => NodeJson {
                    node: member,
                    role: "not answering".to_string(),
                    epoch: None,
                    last_index: None,
                    pid: None,
                },
            })
            .collect();
        StatusJson {
            leader: &leader.node,
            leader_queue: leader.membership.get(1..).unwrap_or_default(),
            record: leader
                .record
                .as_ref()
                .map(|RecordView { version, members }| RecordJson { version: *version, members }),
            nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use gavel::auction::{AuctionEvent, EventKind, Verdict};
    use gavel::replication::{LogPosition, Role};
    use gavel::web::json::EventJson;

    use super::*;

    fn auction() -> AuctionInfo {
        AuctionInfo {
            auction_id: "a1".into(),
            seller: "sam".into(),
            title: "a \"blue\" vase".into(),
            description: "".into(),
            minimum_amount: 5,
            created_at_unix_ms: 1_700_000_000_000,
            ends_at_unix_ms: 1_700_000_600_000,
            over: false,
            highest_amount: 120,
            highest_bidder: "alice".into(),
            accepted_bids: 3,
            now_unix_ms: 1_700_000_001_000,
            revision: 42,
            cancelled: false,
        }
    }

    fn status(node: &str, role: Role, membership: &[&str], record: Option<RecordView>) -> NodeStatus {
        NodeStatus {
            waiting: None,
            node: node.into(),
            role,
            epoch: 7,
            leader: None,
            membership: membership.iter().map(|member| member.to_string()).collect(),
            last: LogPosition { index: 12, ..LogPosition::default() },
            pid: 4321,
            cluster_id: String::new(),
            disk: None,
            http: None,
            record,
        }
    }

    // The lines below are what the hand-built `json!` values printed: the
    // keys sorted, no spaces. Scripts read them; they must not change
    // (events took the event stream's vocabulary, as one rule for every
    // event a reader gets).

    #[test]
    fn an_auction_prints_as_it_always_has() {
        assert_eq!(
            json_line(&AuctionJson::from(&auction())),
            r#"{"accepted_bids":3,"auction_id":"a1","cancelled":false,"created_at_unix_ms":1700000000000,"description":"","ends_at_unix_ms":1700000600000,"highest_amount":120,"highest_bidder":"alice","minimum_amount":5,"now_unix_ms":1700000001000,"over":false,"revision":42,"seller":"sam","title":"a \"blue\" vase"}"#
        );
    }

    /// `watch --json` speaks the event stream's vocabulary (the REST API's
    /// names): the event's name, its revision as the id, its data.
    #[test]
    fn events_print_as_the_event_stream_carries_them() {
        let bid = AcceptedBid { bidder: "bob".into(), amount: 130, at_unix_ms: 1_700_000_002_000, revision: 43 };
        let accepted = AuctionEvent { revision: 43, auction_id: "a1".into(), kind: EventKind::BidAccepted(bid) };
        assert_eq!(
            json_line(&EventJson::from(&accepted)),
            r#"{"data":{"auction_item_id":"a1","bid_price":130,"id":"43","participant_id":"bob","timestamp":"2023-11-14T22:13:22Z"},"event":"bid","id":"43"}"#
        );
        let item = r#"{"bids":3,"created_at":"2023-11-14T22:13:20Z","current_price":120,"description":"","expiry_time":"2023-11-14T22:23:20Z","id":"a1","minimum_bid":5,"name":"a \"blue\" vase","seller":"sam"}"#;
        let opened = AuctionEvent { revision: 42, auction_id: "a1".into(), kind: EventKind::Opened(auction()) };
        assert_eq!(json_line(&EventJson::from(&opened)), format!(r#"{{"data":{item},"event":"opened","id":"42"}}"#));
        let closed = AuctionEvent { revision: 44, auction_id: "a1".into(), kind: EventKind::Closed(auction()) };
        assert_eq!(
            json_line(&EventJson::from(&closed)),
            format!(
                r#"{{"data":{{"auction":{item},"cancelled":false,"winner":"alice","winning_bid_price":120}},"event":"closed","id":"44"}}"#
            )
        );
        let progress = AuctionEvent { revision: 45, auction_id: String::new(), kind: EventKind::Progress };
        assert_eq!(json_line(&EventJson::from(&progress)), r#"{"data":{"revision":45},"event":"progress","id":"45"}"#);
    }

    #[test]
    fn a_history_bid_prints_as_it_always_has() {
        let bid = AcceptedBid { bidder: "bob".into(), amount: 130, at_unix_ms: 1_700_000_002_000, revision: 43 };
        assert_eq!(
            json_line(&HistoryBidJson::from(&bid)),
            r#"{"amount":130,"at_unix_ms":1700000002000,"bidder":"bob","revision":43}"#
        );
    }

    #[test]
    fn a_create_prints_as_it_always_has() {
        let created = CreateOutcome { verdict: Verdict::Success, reason: None, auction_id: "a7".into() };
        assert_eq!(
            json_line(&CreateJson::from(&created)),
            r#"{"auction_id":"a7","outcome":"SUCCESS","reason":"","reason_code":null}"#
        );
        let refused = CreateOutcome::exception(Reason::AmountZero);
        let line = json_line(&CreateJson::from(&refused));
        let expected = format!(
            r#"{{"auction_id":"","outcome":"EXCEPTION","reason":{},"reason_code":"amount_zero"}}"#,
            serde_json::Value::from(Reason::AmountZero.to_string())
        );
        assert_eq!(line, expected);
    }

    #[test]
    fn the_status_prints_as_it_always_has() {
        let record = RecordView { version: 3, members: vec!["n1".into(), "n2".into()] };
        let leader = status("n1", Role::Leader, &["n1", "n2", "n3"], Some(record));
        let members = vec![
            ("n1".to_string(), Some(leader.clone())),
            ("n2".to_string(), Some(status("n2", Role::Backup, &[], None))),
            ("n3".to_string(), None),
        ];
        assert_eq!(
            json_line(&StatusJson::new(&leader, &members)),
            format!(
                r#"{{"leader":"n1","leader_queue":["n2","n3"],"nodes":[{{"epoch":{epoch},"last_index":12,"node":"n1","pid":4321,"role":"leader"}},{{"epoch":{epoch},"last_index":12,"node":"n2","pid":4321,"role":"backup"}},{{"node":"n3","role":"not answering"}}],"record":{{"members":["n1","n2"],"version":3}}}}"#,
                epoch = epoch_number(7)
            )
        );
        let alone = status("n1", Role::Leader, &["n1"], None);
        assert_eq!(
            json_line(&StatusJson::new(&alone, &[])),
            r#"{"leader":"n1","leader_queue":[],"nodes":[],"record":null}"#
        );
    }
}
