//! The HTTP/JSON API against real 3-node clusters: every route, status code
//! and error, requests spread over all three nodes, a leader killed in the
//! middle, server-sent events resumed with `Last-Event-ID`, and the gRPC
//! conventions (health, reflection, the non-leader's message).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use gavel::tools::cluster::LocalCluster;
use gavel::web::json::rfc3339;

use common::{eventually, ports, spec};

const SETTLE: Duration = Duration::from_secs(15);

/// A 3-node cluster on `slot`'s ports, node `i` serving HTTP on `base + 10 + i`.
async fn start(slot: u16) -> LocalCluster {
    let mut spec = spec(slot, 3, &[]);
    spec.http_base_port = Some(ports(slot).base + 10);
    LocalCluster::start(spec).await.expect("cluster starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

fn url(cluster: &LocalCluster, node: usize, path: &str) -> String {
    format!("http://{}{path}", cluster.http_address(node).expect("the spec gives HTTP ports"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// Sends a request and reads its status and JSON body.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

async fn get(cluster: &LocalCluster, node: usize, path: &str) -> (StatusCode, Value) {
    send(http().get(url(cluster, node, path))).await
}

async fn post(cluster: &LocalCluster, node: usize, path: &str, body: Value) -> (StatusCode, Value) {
    send(http().post(url(cluster, node, path)).json(&body)).await
}

async fn post_keyed(cluster: &LocalCluster, node: usize, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
    send(http().post(url(cluster, node, path)).header("Idempotency-Key", key).json(&body)).await
}

fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(answer.1["message"].as_str().is_some_and(|message| !message.is_empty()), "{}", answer.1);
}

/// Creates an auction through `node` that ends `lasting_ms` from now.
async fn create(cluster: &LocalCluster, node: usize, name: &str, minimum_bid: u64, lasting_ms: i64) -> Value {
    let body = json!({
        "name": name, "description": format!("{name}, as new"), "minimum_bid": minimum_bid,
        "expiry_time": rfc3339(now_ms() + lasting_ms),
    });
    let (status, item) = post(cluster, node, "/auctions", body).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    item
}

fn assert_time(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("{value} is not a string"));
    assert!(gavel::web::json::parse_rfc3339(text).is_some(), "{text} is not RFC 3339");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_on_every_node_with_its_codes() {
    let cluster = start(50).await;

    // The document describes what the routes serve.
    let (status, openapi) = get(&cluster, 0, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(openapi["openapi"].as_str().is_some_and(|version| version.starts_with('3')));
    for path in
        ["/auctions", "/auctions/{id}", "/auctions/{id}/bids", "/auctions/{id}/status", "/auctions/{id}/history"]
    {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }

    // Created through node 0, read through nodes 1 and 2.
    let response = http()
        .post(url(&cluster, 0, "/auctions"))
        .json(&json!({"name": "lamp", "description": "brass", "minimum_bid": 50.0,
                      "expiry_time": rfc3339(now_ms() + 3_600_000), "timestamp": "ignored"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().expect("ascii").to_string();
    let lamp: Value = response.json().await.expect("json");
    let id = lamp["id"].as_str().expect("an id").to_string();
    assert_eq!(location, format!("/auctions/{id}"));
    assert_eq!((lamp["name"].clone(), lamp["description"].clone()), (json!("lamp"), json!("brass")));
    assert_eq!(lamp["minimum_bid"], 50);
    assert_time(&lamp["expiry_time"]);
    assert_time(&lamp["created_at"]);
    let mut keys: Vec<&String> = lamp.as_object().expect("an object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["bids", "created_at", "current_price", "description", "expiry_time", "id", "minimum_bid", "name", "seller"]
    );
    // What a list shows of each auction: its seller, price and bids (and
    // its winner, once it is over and somebody bid).
    assert_eq!(
        (lamp["seller"].clone(), lamp["current_price"].clone(), lamp["bids"].clone()),
        (json!("http"), json!(0), json!(0))
    );
    // A create may give a duration instead of an end, whatever today's date.
    let (status, clock) = post(&cluster, 0, "/auctions", json!({"name": "clock", "duration": "10m"})).await;
    assert_eq!(status, StatusCode::CREATED, "{clock}");
    assert_time(&clock["expiry_time"]);
    // A cancelled auction says so, so that a reader tells it from one that
    // ended unsold.
    let clock_id = clock["id"].as_str().expect("an id");
    let cancel = common::client(&cluster).cancel_auction(clock_id, "http").await.expect("an answer");
    assert_eq!(cancel.verdict, gavel::auction::Verdict::Success, "the seller cancels: {cancel:?}");
    let (_, cancelled) = get(&cluster, 1, &format!("/auctions/{clock_id}")).await;
    assert_eq!(cancelled["cancelled"], json!(true), "{cancelled}");
    assert!(cancelled.get("winner").is_none(), "{cancelled}");
    let both = json!({"name": "clock", "duration": "10m", "expiry_time": rfc3339(now_ms() + 60_000)});
    assert_error(&post(&cluster, 0, "/auctions", both).await, StatusCode::BAD_REQUEST, "invalid_field");

    let (status, items) = get(&cluster, 1, "/auctions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(items.as_array().expect("an array").contains(&lamp), "{items}");
    // The list is paged: a page of one links to the next, which holds the
    // lamp (the cluster's own auction comes first).
    let response = http().get(url(&cluster, 2, "/auctions?limit=1")).send().await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let next = response.headers()["link"].to_str().expect("ascii").to_string();
    let first: Value = response.json().await.expect("json");
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    let next = next.strip_prefix('<').and_then(|link| link.strip_suffix(">; rel=\"next\"")).expect("a next link");
    let (status, second) = get(&cluster, 0, next).await;
    assert_eq!((status, second), (StatusCode::OK, json!([lamp.clone()])));
    assert_error(&get(&cluster, 1, "/auctions?limit=0").await, StatusCode::BAD_REQUEST, "invalid_query");
    assert_error(&get(&cluster, 1, "/auctions?limit=1001").await, StatusCode::BAD_REQUEST, "invalid_query");
    assert_eq!(get(&cluster, 2, &format!("/auctions/{id}")).await, (StatusCode::OK, lamp.clone()));

    // Bids, spread over the nodes.
    let bids = format!("/auctions/{id}/bids");
    let (status, first) = post(&cluster, 1, &bids, json!({"participant_id": "ann", "bid_price": 60})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!((first["participant_id"].clone(), first["bid_price"].clone()), (json!("ann"), json!(60)));
    assert_eq!(first["auction_item_id"], id.as_str());
    assert!(first["message"].as_str().is_some_and(|message| message.contains("ann")), "{first}");
    assert_time(&first["timestamp"]);
    // A client's own timestamp and auction id are ignored.
    let (status, second) = post(
        &cluster,
        2,
        &bids,
        json!({"participant_id": "bob", "bid_price": 70.0, "timestamp": "1999-01-01T00:00:00Z", "auction_item_id": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!((second["bid_price"].clone(), second["auction_item_id"].clone()), (json!(70), json!(id)));
    assert!(second["timestamp"].as_str() > Some("2000"), "the leader's stamp: {second}");

    // Refusals: each its status and the service's code.
    assert_error(
        &post(&cluster, 0, &bids, json!({"participant_id": "cy", "bid_price": 70})).await,
        StatusCode::CONFLICT,
        "not_higher",
    );
    assert_error(
        &post(&cluster, 0, &bids, json!({"participant_id": "cy", "bid_price": 100.5})).await,
        StatusCode::BAD_REQUEST,
        "invalid_amount",
    );
    assert_error(
        &post(&cluster, 1, &bids, json!({"participant_id": "cy", "bid_price": -5})).await,
        StatusCode::BAD_REQUEST,
        "invalid_amount",
    );
    assert_error(
        &post(&cluster, 1, &bids, json!({"participant_id": "cy", "bid_price": 1e20})).await,
        StatusCode::BAD_REQUEST,
        "invalid_amount",
    );
    assert_error(
        &post(&cluster, 2, &bids, json!({"participant_id": "cy", "bid_price": 0})).await,
        StatusCode::BAD_REQUEST,
        "amount_zero",
    );
    assert_error(
        &post(&cluster, 2, &bids, json!({"participant_id": "cy"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    assert_error(
        &post(&cluster, 0, &bids, json!({"participant_id": "", "bid_price": 80})).await,
        StatusCode::BAD_REQUEST,
        "name_empty",
    );
    assert_error(
        &post(&cluster, 0, &bids, json!({"participant_id": "http", "bid_price": 80})).await,
        StatusCode::CONFLICT,
        "seller_bids",
    );
    assert_error(
        &post(&cluster, 0, "/auctions/nope/bids", json!({"participant_id": "cy", "bid_price": 80})).await,
        StatusCode::NOT_FOUND,
        "unknown_auction",
    );
    let bad_json = send(
        http().post(url(&cluster, 1, &bids)).header("content-type", "application/json").body("{\"participant_id\": "),
    )
    .await;
    assert_error(&bad_json, StatusCode::BAD_REQUEST, "malformed_json");
    let huge = format!("{{\"participant_id\": \"{}\", \"bid_price\": 90}}", "x".repeat(70 * 1024));
    assert_error(
        &send(http().post(url(&cluster, 2, &bids)).body(huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    let reserved = create(&cluster, 1, "clock", 500, 3_600_000).await;
    let reserved_bids = format!("/auctions/{}/bids", reserved["id"].as_str().expect("id"));
    assert_error(
        &post(&cluster, 2, &reserved_bids, json!({"participant_id": "cy", "bid_price": 10})).await,
        StatusCode::CONFLICT,
        "below_minimum",
    );

    // Reads of what is not there.
    assert_error(&get(&cluster, 0, "/auctions/nope").await, StatusCode::NOT_FOUND, "unknown_auction");
    assert_error(&get(&cluster, 1, "/auctions/nope/status").await, StatusCode::NOT_FOUND, "unknown_auction");
    assert_error(&get(&cluster, 2, "/auctions/nope/history").await, StatusCode::NOT_FOUND, "unknown_auction");
    assert_error(
        &get(&cluster, 0, &format!("/auctions/{}", "x".repeat(65))).await,
        StatusCode::BAD_REQUEST,
        "auction_id_too_long",
    );
    assert_error(&get(&cluster, 1, "/nowhere").await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &send(http().delete(url(&cluster, 2, "/auctions"))).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Creates the service refuses.
    let past = json!({"name": "late", "expiry_time": rfc3339(now_ms() - 1000)});
    assert_error(&post(&cluster, 0, "/auctions", past).await, StatusCode::BAD_REQUEST, "end_not_in_future");
    let unnamed = json!({"name": " ", "expiry_time": rfc3339(now_ms() + 60_000)});
    assert_error(&post(&cluster, 1, "/auctions", unnamed).await, StatusCode::BAD_REQUEST, "title_empty");
    let long = json!({"name": "n".repeat(30_000), "expiry_time": rfc3339(now_ms() + 60_000)});
    assert_error(&post(&cluster, 0, "/auctions", long).await, StatusCode::BAD_REQUEST, "title_too_long");
    let long_bidder = json!({"participant_id": "p".repeat(30_000), "bid_price": 500});
    assert_error(&post(&cluster, 1, &bids, long_bidder).await, StatusCode::BAD_REQUEST, "name_too_long");
    let no_time = json!({"name": "x", "expiry_time": "tomorrow"});
    assert_error(&post(&cluster, 2, "/auctions", no_time).await, StatusCode::BAD_REQUEST, "invalid_field");

    // Exactly once with an Idempotency-Key, whichever nodes the retries reach.
    let keyed = json!({"participant_id": "dee", "bid_price": 80});
    let (status, placed) = post_keyed(&cluster, 0, &bids, "bid-dee-80", keyed.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    for node in [1, 2, 0] {
        assert_eq!(
            post_keyed(&cluster, node, &bids, "bid-dee-80", keyed.clone()).await,
            (StatusCode::CREATED, placed.clone())
        );
    }
    let reused = post_keyed(&cluster, 1, &bids, "bid-dee-80", json!({"participant_id": "dee", "bid_price": 90})).await;
    assert_error(&reused, StatusCode::UNPROCESSABLE_ENTITY, "request_id_reused");
    let long_key = "k".repeat(200);
    let (status, long_placed) =
        post_keyed(&cluster, 2, &bids, &long_key, json!({"participant_id": "eve", "bid_price": 85})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        post_keyed(&cluster, 0, &bids, &long_key, json!({"participant_id": "eve", "bid_price": 85})).await,
        (StatusCode::CREATED, long_placed.clone())
    );
    let bad_key = send(http().post(url(&cluster, 0, &bids)).header("Idempotency-Key", "two words").json(&keyed)).await;
    assert_error(&bad_key, StatusCode::BAD_REQUEST, "invalid_idempotency_key");

    let create_body = json!({"name": "vase", "expiry_time": rfc3339(now_ms() + 3_600_000), "minimum_bid": 5});
    let (status, vase) = post_keyed(&cluster, 1, "/auctions", "create-vase", create_body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        post_keyed(&cluster, 2, "/auctions", "create-vase", create_body).await,
        (StatusCode::CREATED, vase.clone())
    );
    let (_, items) = get(&cluster, 0, "/auctions").await;
    assert_eq!(
        items.as_array().expect("array").iter().filter(|item| item["name"] == "vase").count(),
        1,
        "created once"
    );

    // The history: every accepted bid once, oldest first, ids the revisions.
    let (status, history) = get(&cluster, 2, &format!("/auctions/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let history = history.as_array().expect("array").clone();
    let prices: Vec<u64> = history.iter().map(|bid| bid["bid_price"].as_u64().expect("price")).collect();
    assert_eq!(prices, [60, 70, 80, 85], "the keyed bid counted once");
    assert_eq!(
        history[0],
        json!({"id": first["id"], "participant_id": "ann", "auction_item_id": id, "bid_price": 60, "timestamp": first["timestamp"]})
    );
    assert_eq!(history[2]["id"], placed["id"]);
    let revisions: Vec<u64> =
        history.iter().map(|bid| bid["id"].as_str().expect("id").parse().expect("a revision")).collect();
    assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "{revisions:?}");

    // The status: the highest bid, and the time left by the leader's clock.
    let (status, state) = get(&cluster, 0, &format!("/auctions/{id}/status")).await;
    assert_eq!(status, StatusCode::OK);
    // The lamp as created, with its price and bids since.
    let mut bid_on = lamp.clone();
    (bid_on["current_price"], bid_on["bids"]) = (json!(85), json!(4));
    assert_eq!(state["auction"], bid_on);
    assert_eq!(state["highest_bid"], history[3]);
    assert_eq!(state["status"], "active");
    let remaining = state["time_remaining"].as_str().expect("a duration");
    assert!(remaining.starts_with("59m") || remaining.starts_with("1h0m"), "{remaining}");
    let (_, fresh) = get(&cluster, 1, &format!("/auctions/{}/status", reserved["id"].as_str().expect("id"))).await;
    assert!(fresh.get("highest_bid").is_none(), "absent with no bid: {fresh}");

    // An auction that ends: expired, and a late bid is refused.
    let brief = create(&cluster, 2, "brief", 1, 1_000).await;
    let brief_id = brief["id"].as_str().expect("id").to_string();
    eventually("the auction to expire", SETTLE, || async {
        let (_, state) = get(&cluster, 1, &format!("/auctions/{brief_id}/status")).await;
        (state["status"] == "expired").then_some(())
    })
    .await;
    let late =
        post(&cluster, 0, &format!("/auctions/{brief_id}/bids"), json!({"participant_id": "ann", "bid_price": 5}))
            .await;
    assert_error(&late, StatusCode::CONFLICT, "auction_over");
    let (_, state) = get(&cluster, 2, &format!("/auctions/{brief_id}/status")).await;
    assert_eq!(state["time_remaining"], "0s");

    // Cross-origin: any origin, the API's headers.
    let preflight = http()
        .request(reqwest::Method::OPTIONS, url(&cluster, 1, &bids))
        .header("Origin", "http://127.0.0.1:9999")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,idempotency-key")
        .send()
        .await
        .expect("answer");
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().expect("ascii").to_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");

    // Metrics, in Prometheus' text format.
    let response = http().get(url(&cluster, 1, "/metrics")).send().await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    let text = response.text().await.expect("text");
    for needle in [
        "gavel_role{node=\"127.0.0.1:",
        "role=\"backup\"} 1",
        "gavel_epoch{",
        "gavel_last_index{",
        "gavel_replication_lag_entries{member=",
        "gavel_failovers_total{",
        "gavel_http_bids_total{outcome=\"accepted\"}",
        "gavel_http_requests_total{route=\"/auctions/{id}/bids\",code=\"201\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_the_nodes_carry_on_through_a_leader_kill() {
    let mut cluster = start(51).await;
    let item = create(&cluster, 1, "clock", 1, 3_600_000).await;
    let bids = format!("/auctions/{}/bids", item["id"].as_str().expect("id"));
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader");
    // Each node's count of takeovers starts once it has read its epoch.
    for node in 0..cluster.len() {
        eventually("the node to read its epoch", SETTLE, || async {
            let text = http().get(url(&cluster, node, "/metrics")).send().await.ok()?.text().await.ok()?;
            text.contains("gavel_failovers_total{node=").then_some(())
        })
        .await;
    }

    let mut accepted = Vec::new();
    let mut node = 0;
    for price in 1..=30u64 {
        if price == 12 {
            cluster.kill(leader).expect("kill the leader");
        }
        // Round robin over the live nodes; a node that does not answer
        // gets the same keyed request retried on the next.
        let key = format!("spread-{price}");
        let body = json!({"participant_id": format!("p{}", price % 4), "bid_price": price});
        let answer = loop {
            node = (node + 1) % cluster.len();
            if !cluster.is_running(node) {
                continue;
            }
            let request = http().post(url(&cluster, node, &bids)).header("Idempotency-Key", &key).json(&body);
            if let Ok(response) = request.send().await {
                let status = response.status();
                break (status, response.json::<Value>().await.expect("json"));
            }
        };
        assert_eq!(answer.0, StatusCode::CREATED, "bid {price}: {}", answer.1);
        accepted.push(price);
    }
    let new_leader = cluster.wait_for_leader(SETTLE).await.expect("a new leader");
    assert_ne!(new_leader, leader);

    for survivor in (0..cluster.len()).filter(|&i| cluster.is_running(i)) {
        let (status, history) =
            get(&cluster, survivor, &format!("/auctions/{}/history", item["id"].as_str().expect("id"))).await;
        assert_eq!(status, StatusCode::OK);
        let prices: Vec<u64> =
            history.as_array().expect("array").iter().map(|bid| bid["bid_price"].as_u64().expect("price")).collect();
        assert_eq!(prices, accepted, "every acknowledged bid exactly once, through node {survivor}");
    }
    // A survivor that does not lead saw the takeover.
    let backup = (0..cluster.len()).find(|&i| cluster.is_running(i) && i != new_leader).expect("a backup");
    let text = eventually("the takeover in the metrics", SETTLE, || async {
        let text = http().get(url(&cluster, backup, "/metrics")).send().await.ok()?.text().await.ok()?;
        text.lines()
            .find(|line| line.starts_with("gavel_failovers_total"))
            .filter(|line| !line.ends_with(" 0"))
            .map(str::to_string)
    })
    .await;
    assert!(text.ends_with(" 1"), "{text}");
}

/// A server-sent event as the test reads it.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

/// Reads server-sent events from a response, one at a time.
struct EventReader {
    body: std::pin::Pin<Box<dyn tokio_stream::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl EventReader {
    async fn open(url: &str, last_event_id: Option<&str>) -> EventReader {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream"));
        let body = response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec()));
        EventReader { body: Box::pin(body), buffer: String::new() }
    }

    /// The next event with data (comments and the retry hint skipped).
    async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(SETTLE, async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) = (None, String::from("message"), None);
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("id:") {
                            id = Some(value.trim().to_string());
                        } else if let Some(value) = line.strip_prefix("event:") {
                            event = value.trim().to_string();
                        } else if let Some(value) = line.strip_prefix("data:") {
                            data = Some(serde_json::from_str(value.trim()).expect("JSON data"));
                        }
                    }
                    if let Some(data) = data {
                        return SseEvent { id, event, data };
                    }
                }
                let chunk = self.body.next().await.expect("the stream goes on").expect("a chunk");
                self.buffer.push_str(&String::from_utf8(chunk).expect("UTF-8"));
            }
        })
        .await
        .expect("an event in time")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_revisions_and_resume_after_last_event_id() {
    let cluster = start(52).await;
    let item = create(&cluster, 0, "globe", 1, 3_600_000).await;
    let id = item["id"].as_str().expect("id").to_string();
    let bids = format!("/auctions/{id}/bids");

    // Every auction's events, through node 1; one auction's through node 2.
    let mut everything = EventReader::open(&url(&cluster, 1, "/events"), None).await;
    let mut one = EventReader::open(&url(&cluster, 2, &format!("/events?auction={id}")), None).await;
    assert_eq!(everything.next().await.event, "progress");
    let start = one.next().await;
    assert_eq!(start.event, "progress");
    assert_eq!(
        start.id.as_deref().map(str::parse::<u64>),
        Some(Ok(start.data["revision"].as_u64().expect("revision")))
    );

    let mut placed = Vec::new();
    for (node, price) in [(0, 10), (1, 20), (2, 30), (0, 40)] {
        let (status, bid) = post(&cluster, node, &bids, json!({"participant_id": "ann", "bid_price": price})).await;
        assert_eq!(status, StatusCode::CREATED, "{bid}");
        placed.push(bid);
    }
    for bid in &placed {
        let event = one.next().await;
        assert_eq!(event.event, "bid");
        assert_eq!(
            event.id.as_ref(),
            bid["id"].as_str().map(str::to_string).as_ref(),
            "the event's id is the bid's revision"
        );
        let mut expected = bid.clone();
        expected.as_object_mut().expect("object").remove("message");
        assert_eq!(event.data, expected);
    }
    let other = create(&cluster, 2, "atlas", 1, 3_600_000).await;
    // The all-auctions stream has the bids, then the new auction opening.
    for bid in &placed {
        assert_eq!(everything.next().await.id.as_ref(), bid["id"].as_str().map(str::to_string).as_ref());
    }
    let opened = everything.next().await;
    assert_eq!((opened.event.as_str(), &opened.data), ("opened", &other));

    // A reader that reconnects with Last-Event-ID gets exactly what followed.
    let second = placed[1]["id"].as_str().expect("id");
    let mut resumed = EventReader::open(&url(&cluster, 0, &format!("/events?auction={id}")), Some(second)).await;
    for bid in &placed[2..] {
        let event = resumed.next().await;
        assert_eq!((event.event.as_str(), event.id.as_deref()), ("bid", bid["id"].as_str()));
    }
    let (_, late) = post(&cluster, 1, &bids, json!({"participant_id": "bob", "bid_price": 50})).await;
    assert_eq!(resumed.next().await.id.as_deref(), late["id"].as_str(), "nothing between");
    // `after` in the query does the same.
    let mut from_query =
        EventReader::open(&url(&cluster, 1, &format!("/events?auction={id}&after={second}")), None).await;
    assert_eq!(from_query.next().await.id.as_deref(), placed[2]["id"].as_str());

    // One stream of two auctions: both auctions' bids, in order.
    let other_id = other["id"].as_str().expect("id").to_string();
    let mut both = EventReader::open(&url(&cluster, 2, &format!("/events?auction={id},{other_id}")), None).await;
    assert_eq!(both.next().await.event, "progress");
    let (_, on_other) =
        post(&cluster, 0, &format!("/auctions/{other_id}/bids"), json!({"participant_id": "cy", "bid_price": 7})).await;
    let (_, on_first) = post(&cluster, 0, &bids, json!({"participant_id": "cy", "bid_price": 60})).await;
    assert_eq!(both.next().await.id.as_deref(), on_other["id"].as_str());
    assert_eq!(both.next().await.id.as_deref(), on_first["id"].as_str());
    let too_many = (0..=100).map(|n| format!("a{n}")).collect::<Vec<_>>().join(",");
    let refused = get(&cluster, 0, &format!("/events?auction={too_many}")).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "too_many_auctions");

    // Errors: an unknown auction, a malformed resume point.
    assert_error(&get(&cluster, 0, "/events?auction=nope").await, StatusCode::NOT_FOUND, "unknown_auction");
    assert_error(&get(&cluster, 0, "/events?after=soon").await, StatusCode::BAD_REQUEST, "invalid_query");
    let bad = send(http().get(url(&cluster, 0, "/events")).header("Last-Event-ID", "x")).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_last_event_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_ports_serve_health_reflection_and_name_the_leader() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let mut spec = spec(53, 3, &[]);
    spec.http_base_port = None;
    let cluster = LocalCluster::start(spec).await.expect("cluster starts");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader");

    let health = |address: String| async move {
        let mut client = HealthClient::new(channel(&address).await);
        let request = HealthCheckRequest { service: "gavel.v1.Auction".into() };
        client.check(request).await.expect("a health answer").into_inner().status
    };
    assert_eq!(health(cluster.client_address()).await, ServingStatus::Serving as i32);
    for node in 0..cluster.len() {
        let expected = if node == leader { ServingStatus::Serving } else { ServingStatus::NotServing };
        assert_eq!(health(cluster.node_address(node)).await, expected as i32, "node {node}");
    }

    // Reflection lists the API on the client port, v1 and v1alpha.
    let services = reflection_services(&cluster.client_address()).await;
    for service in ["gavel.v1.Auction", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(services.contains(&service.to_string()), "{service} missing from {services:?}");
    }
    let node_services = reflection_services(&cluster.node_address(leader)).await;
    assert!(node_services.contains(&"gavel.replication.v1.Replication".to_string()), "{node_services:?}");

    // A backup's refusal of a write names the leader in its message (a
    // read it answers itself: every node serves reads).
    let backup = (0..cluster.len()).find(|&i| i != leader).expect("a backup");
    let network = gavel::transport::Network::tcp();
    let settings = gavel::transport::TransportSettings::default();
    let mut connection = gavel::transport::AuctionConnection::new(
        &network,
        &cluster.node_address(backup),
        &settings,
        Duration::from_secs(2),
    )
    .expect("connection");
    let bid = gavel::auction::Bid {
        auction_id: String::new(),
        bidder: "ann".into(),
        amount: 1,
        client_id: "c".into(),
        request_id: 1,
        at_unix_ms: 0,
        name_digest: None,
    };
    match connection.bid(&bid, &[]).await {
        Err(gavel::transport::CallError::Unavailable { message, leader_hint }) => {
            assert_eq!(leader_hint, Some(cluster.node_address(leader)));
            assert!(message.contains(&format!("the leader is {}", cluster.node_address(leader))), "{message}");
        }
        other => panic!("a backup answered {other:?}"),
    }
    let read = connection.get_auction("default").await.expect("a backup answers a read itself");
    assert_eq!(read.auction_id, "default");
}

async fn channel(address: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("a URI")
        .connect()
        .await
        .expect("connects")
}

/// The services `address` lists through reflection, v1 and v1alpha alike.
async fn reflection_services(address: &str) -> Vec<String> {
    use tonic_reflection::pb::{v1, v1alpha};
    let mut v1_client = v1::server_reflection_client::ServerReflectionClient::new(channel(address).await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = v1_client.server_reflection_info(tokio_stream::once(request)).await.expect("v1").into_inner();
    let answer = answers.message().await.expect("an answer").expect("a message");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = answer.message_response
    else {
        panic!("not a list: {answer:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    names.sort();

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel(address).await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = alpha.server_reflection_info(tokio_stream::once(request)).await.expect("v1alpha").into_inner();
    let answer = answers.message().await.expect("an answer").expect("a message");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("not a list: {answer:?}");
    };
    let mut alpha_names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    alpha_names.sort();
    assert_eq!(names, alpha_names, "v1 and v1alpha list the same services");
    names
}
