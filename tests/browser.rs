//! The web page in a real browser (headless Chromium through chromedriver,
//! Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs
//! them): two people on two nodes' pages create an auction and bid, each
//! sees the other's bid appear without a reload (and who is winning and
//! who was outbid), and both pages carry on when the leader is SIGKILLed;
//! and the page as an auction site: a double click creates one auction,
//! the countdown ticks, an error shows by its field, a closed auction names
//! its winner and takes no bids, and nothing is wider than a phone.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use common::eventually;

const DEADLINE: Duration = Duration::from_secs(30);

/// chromedriver, killed when the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver(port: u16) -> Driver {
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (Debian: apt-get install chromium chromium-driver; scripts/test.sh does it)");
    Driver(child)
}

async fn browser(driver_port: u16) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        }),
    );
    let url = format!("http://127.0.0.1:{driver_port}");
    eventually("chromedriver to take a session", DEADLINE, || {
        let (url, capabilities) = (url.clone(), capabilities.clone());
        async move { ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&url).await.ok() }
    })
    .await
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Waits until the element's text contains `words`.
async fn wait_for_text(client: &Client, css: &str, words: &str) {
    eventually(&format!("{css} to say {words:?}"), DEADLINE, || async move {
        text_of(client, css).await.filter(|text| text.contains(words))
    })
    .await;
}

async fn fill(client: &Client, css: &str, value: &str) {
    let field = client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn bid(client: &Client, who: &str, amount: u64) {
    fill(client, "#participant", who).await;
    fill(client, "#price", &amount.to_string()).await;
    client.find(Locator::Css("#bid-form button")).await.expect("bid button").click().await.expect("click");
}

/// A cluster of the slot's whose nodes serve the page from base + 10 on.
async fn cluster_with_pages(slot: u16, nodes: usize) -> (common::Ports, gavel::tools::cluster::LocalCluster) {
    let ports = common::ports(slot);
    let mut spec = common::spec(slot, nodes, &[]);
    spec.http_base_port = Some(ports.base + 10);
    (ports, gavel::tools::cluster::LocalCluster::start(spec).await.expect("cluster"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_bid_on_two_nodes_pages_see_each_other_live_and_carry_on_after_the_leader_dies() {
    let (ports, mut cluster) = cluster_with_pages(49, 3).await;
    let page = |i: u16| format!("http://127.0.0.1:{}/", ports.base + 10 + i);
    let _driver = start_chromedriver(ports.base + 15);
    let alice = browser(ports.base + 15).await;
    let bob = browser(ports.base + 15).await;

    // Alice, on node 0's page, puts a lamp up for sale.
    alice.goto(&page(0)).await.expect("alice opens the page");
    wait_for_text(&alice, "#cluster", "leader").await;
    fill(&alice, "#name", "a lamp").await;
    fill(&alice, "#minimum", "5").await;
    alice.find(Locator::Css("#create-form button")).await.expect("create").click().await.expect("click");
    wait_for_text(&alice, "#title", "a lamp").await;
    let url = alice.current_url().await.expect("url");
    let id = url.fragment().expect("the page names the auction").to_string();

    // Bob opens it on node 1's page.
    bob.goto(&format!("{}#{id}", page(1))).await.expect("bob opens the page");
    wait_for_text(&bob, "#title", "a lamp").await;

    // Each sees the other's bid appear, without a reload.
    bid(&alice, "alice", 10).await;
    wait_for_text(&bob, "#highest", "10 by alice").await;
    wait_for_text(&bob, "#history", "alice").await;
    wait_for_text(&alice, "#notice", "You are winning").await;
    bid(&bob, "bob", 20).await;
    wait_for_text(&alice, "#highest", "20 by bob").await;
    // Each page tells its person where they stand.
    wait_for_text(&alice, "#notice", "You were outbid").await;
    wait_for_text(&bob, "#notice", "You are winning").await;

    // The leader dies; both pages carry on, on whichever node answers.
    let leader = cluster.wait_for_leader(DEADLINE).await.expect("a leader");
    cluster.kill(leader).expect("kill the leader");
    bid(&alice, "alice", 30).await;
    wait_for_text(&bob, "#highest", "30 by alice").await;
    bid(&bob, "bob", 40).await;
    wait_for_text(&alice, "#highest", "40 by bob").await;
    wait_for_text(&alice, "#history", "bob").await;

    alice.close().await.expect("close alice's session");
    bob.close().await.expect("close bob's session");
}

/// A real double click: two presses of the mouse on the element, as fast
/// as the browser takes them.
async fn double_click(client: &Client, css: &str) {
    let element = client.find(Locator::Css(css)).await.expect(css);
    let clicks = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement { element, duration: None, x: 0.0, y: 0.0 })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    client.perform_actions(clicks).await.expect("double click");
}

async fn is_enabled(client: &Client, css: &str) -> bool {
    client.find(Locator::Css(css)).await.expect(css).is_enabled().await.expect("enabled or not")
}

/// A REST call to a node, answered with its status and JSON body.
async fn rest(method: reqwest::Method, url: String, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_an_auction_site_one_auction_per_double_click_a_ticking_countdown_errors_by_their_field_a_named_winner_and_no_sideways_scroll_on_a_phone()
 {
    let (ports, _cluster) = cluster_with_pages(91, 2).await;
    let api = |path: &str| format!("http://127.0.0.1:{}{path}", ports.base + 10);
    let _driver = start_chromedriver(ports.base + 15);
    let dana = browser(ports.base + 15).await;
    dana.goto(&api("/")).await.expect("dana opens the page");
    wait_for_text(&dana, "#cluster", "leader").await;

    // A double click on "Create auction" creates one auction, and clears
    // the form.
    fill(&dana, "#participant", "dana").await;
    fill(&dana, "#name", "Brass lamp").await;
    fill(&dana, "#minimum", "5").await;
    double_click(&dana, "#create-form button").await;
    wait_for_text(&dana, "#title", "Brass lamp").await;
    wait_for_text(&dana, "#create-result", "up for sale").await;
    let name = dana.find(Locator::Css("#name")).await.expect("name").prop("value").await.expect("value");
    assert_eq!(name.as_deref(), Some(""), "the form is cleared once the auction is up");
    // A write after the page's answer: a second create sent by the double
    // click would have been sequenced by the time this one is.
    let (status, _) =
        rest(reqwest::Method::POST, api("/auctions"), Some(serde_json::json!({"name": "marker", "duration": "1h"})))
            .await;
    assert_eq!(status, 201);
    let (_, items) = rest(reqwest::Method::GET, api("/auctions"), None).await;
    let lamps = items.as_array().expect("items").iter().filter(|item| item["name"] == "Brass lamp").count();
    assert_eq!(lamps, 1, "one auction from one double click: {items}");

    // The countdown ticks, and the list shows the price, bids and seller.
    let first = text_of(&dana, "#state").await.expect("a countdown");
    assert!(first.ends_with("left"), "{first}");
    eventually("the countdown to tick", DEADLINE, || async {
        text_of(&dana, "#state").await.filter(|now| *now != first && now.ends_with("left"))
    })
    .await;
    wait_for_text(&dana, "#auctions", "0 bids · dana").await;

    // A bid below the lowest: the error, in words, by the price field.
    bid(&dana, "erin", 3).await;
    wait_for_text(&dana, "#price-error", "bids of 5 or more").await;
    let invalid = dana.find(Locator::Css("#price")).await.expect("price").attr("aria-invalid").await.expect("attr");
    assert_eq!(invalid.as_deref(), Some("true"));
    // Bidding on one's own auction: by the name field.
    bid(&dana, "dana", 9).await;
    wait_for_text(&dana, "#participant-error", "You sell this").await;

    // A closed auction says who won at what price, and takes no bids.
    let brief = serde_json::json!({"name": "Quick sale", "duration": "4s", "seller": "gus"});
    let (status, quick) = rest(reqwest::Method::POST, api("/auctions"), Some(brief)).await;
    assert_eq!(status, 201, "{quick}");
    let id = quick["id"].as_str().expect("an id").to_string();
    let fred = serde_json::json!({"participant_id": "fred", "bid_price": 7});
    assert_eq!(rest(reqwest::Method::POST, api(&format!("/auctions/{id}/bids")), Some(fred)).await.0, 201);
    dana.goto(&api(&format!("/#{id}"))).await.expect("open the quick sale");
    wait_for_text(&dana, "#notice", "fred won at 7").await;
    wait_for_text(&dana, "#auctions", "sold to fred for 7").await;
    assert!(!is_enabled(&dana, "#price").await, "a closed auction's bid field is disabled");
    assert!(!is_enabled(&dana, "#bid-form button").await, "a closed auction's bid button is disabled");

    // At phone width, a 64-character name without a space: nothing is wider
    // than the screen.
    dana.set_window_size(390, 844).await.expect("phone width");
    let long = "W".repeat(64);
    let (status, wide) = rest(
        reqwest::Method::POST,
        api("/auctions"),
        Some(serde_json::json!({"name": long, "duration": "1h", "seller": "someone-with-a-long-name"})),
    )
    .await;
    assert_eq!(status, 201, "{wide}");
    dana.goto(&api(&format!("/#{}", wide["id"].as_str().expect("an id")))).await.expect("open it");
    wait_for_text(&dana, "#title", &long).await;
    let widths = dana
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth,
                     [...document.querySelectorAll('body *')]
                       .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
                       .map((e) => e.id || e.className || e.tagName)];",
            vec![],
        )
        .await
        .expect("widths");
    let (scroll, inner) = (widths[0].as_f64().expect("scroll width"), widths[1].as_f64().expect("inner width"));
    assert!(inner <= 400.0, "the window is a phone's: {widths}");
    assert!(scroll <= inner, "no sideways scroll at {inner} px: {widths}");
    assert_eq!(widths[2], serde_json::json!([]), "nothing wider than the screen");

    dana.close().await.expect("close dana's session");
}

/// The README's screenshots of the page, wide and at phone width, into
/// `docs/`: `cargo test --release --test browser screenshots -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes the README's screenshots"]
async fn screenshots() {
    let (ports, _cluster) = cluster_with_pages(92, 3).await;
    let api = |path: &str| format!("http://127.0.0.1:{}{path}", ports.base + 10);
    let create = |name: &str, seller: &str, minimum: u64, duration: &str| {
        let body = serde_json::json!({"name": name, "seller": seller, "minimum_bid": minimum, "duration": duration,
                                      "description": "Collected in Lisbon, 1962. Small chip on the base; otherwise as new."});
        rest(reqwest::Method::POST, api("/auctions"), Some(body))
    };
    let (_, lamp) = create("Brass reading lamp", "ana", 20, "2h").await;
    create("Blue glass vase", "ben", 45, "45m").await;
    create("Oak chair, pair", "ana", 80, "1d").await;
    let lamp_id = lamp["id"].as_str().expect("an id").to_string();
    for (who, amount) in [("dora", 25), ("eli", 30)] {
        let bid = serde_json::json!({"participant_id": who, "bid_price": amount});
        rest(reqwest::Method::POST, api(&format!("/auctions/{lamp_id}/bids")), Some(bid)).await;
    }

    let _driver = start_chromedriver(ports.base + 15);
    let carla = browser(ports.base + 15).await;
    carla.set_window_size(1280, 860).await.expect("wide");
    carla.goto(&api(&format!("/#{lamp_id}"))).await.expect("open the page");
    wait_for_text(&carla, "#cluster", "leader").await;
    bid(&carla, "carla", 35).await;
    wait_for_text(&carla, "#notice", "You are winning").await;
    let bid = serde_json::json!({"participant_id": "dora", "bid_price": 40});
    rest(reqwest::Method::POST, api(&format!("/auctions/{lamp_id}/bids")), Some(bid)).await;
    wait_for_text(&carla, "#notice", "You were outbid").await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::write(docs.join("web-page.png"), carla.screenshot().await.expect("screenshot")).expect("write");
    carla.set_window_size(390, 844).await.expect("phone width");
    wait_for_text(&carla, "#notice", "You were outbid").await;
    std::fs::write(docs.join("web-page-phone.png"), carla.screenshot().await.expect("screenshot")).expect("write");
    carla.close().await.expect("close");
}
