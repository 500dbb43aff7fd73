//! The web page in a real browser (headless Chromium through chromedriver,
//! Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs
//! them): two people on two nodes' pages create an auction and bid, each
//! sees the other's bid appear without a reload, and both pages carry on
//! when the leader is SIGKILLed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_bid_on_two_nodes_pages_see_each_other_live_and_carry_on_after_the_leader_dies() {
    let slot = 49;
    let ports = common::ports(slot);
    let mut spec = common::spec(slot, 3, &[]);
    spec.http_base_port = Some(ports.base + 10);
    let mut cluster = gavel::tools::cluster::LocalCluster::start(spec).await.expect("cluster");
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
    bid(&bob, "bob", 20).await;
    wait_for_text(&alice, "#highest", "20 by bob").await;

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
