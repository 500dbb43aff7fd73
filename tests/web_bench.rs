//! Bids per second through the HTTP/JSON API against gRPC, in the same run
//! on the same cluster: what BENCHMARKS.md reports. Ignored by default (it
//! measures, it does not check); run it in release:
//!
//! ```sh
//! cargo test --release --test web_bench -- --ignored --nocapture
//! ```
//!
//! `GAVEL_BENCH_CLIENTS` (default 64), `GAVEL_BENCH_SECONDS` (default 5)
//! and `GAVEL_BENCH_REPS` (default 3) shape it. Each client bids rising
//! amounts on an auction of its own, so every bid is accepted: the REST
//! side pays for an accepted bid's lookup of its revision and stamp.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gavel::auction::{CreateAuction, Verdict};
use gavel::client::{Client, ClientConfig};
use gavel::tools::cluster::LocalCluster;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Runs `clients` loops of `bid` for `seconds`; the bids answered per second.
async fn measure<F, Fut>(clients: usize, seconds: u64, bid: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let bid = Arc::new(bid);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (bid, stop, answered) = (Arc::clone(&bid), Arc::clone(&stop), Arc::clone(&answered));
        tasks.push(tokio::spawn(async move {
            // Amounts rise from the clock, so that every run outbids the last.
            let mut amount = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64;
            while !stop.load(Ordering::Relaxed) {
                amount += 1;
                assert!(bid(client, amount).await, "a bid was refused");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let counted = answered.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client ran");
    }
    counted as f64 / elapsed.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn rest_against_grpc_bids_per_second() {
    let (clients, seconds, reps) = (
        setting("GAVEL_BENCH_CLIENTS", 64) as usize,
        setting("GAVEL_BENCH_SECONDS", 5),
        setting("GAVEL_BENCH_REPS", 3),
    );
    let mut spec = common::spec(54, 3, &["--duration", "1h"]);
    spec.http_base_port = Some(common::ports(54).base + 10);
    spec.log_filter = "warn".into();
    let cluster = LocalCluster::start(spec).await.expect("cluster starts");

    // One auction per client, so that every bid is accepted.
    let mut setup =
        Client::new(ClientConfig { servers: vec![cluster.client_address()], ..Default::default() }).expect("client");
    let mut auctions = Vec::new();
    for client in 0..clients {
        let create = CreateAuction::lasting("bench", &format!("lot {client}"), "", 1, Duration::from_secs(3600));
        let outcome = setup.create_auction(create).await.expect("created");
        assert_eq!(outcome.verdict, Verdict::Success);
        auctions.push(outcome.auction_id);
    }
    let auctions = Arc::new(auctions);
    let http_addresses: Arc<Vec<String>> =
        Arc::new((0..cluster.len()).map(|i| cluster.http_address(i).expect("an HTTP port")).collect());

    println!("clients {clients}, {seconds} s per run, gRPC then REST (requests spread over the 3 nodes)");
    let mut ratios = Vec::new();
    // `GAVEL_BENCH_ONLY=rest` or `=grpc` runs one side (for profiling it).
    let only = std::env::var("GAVEL_BENCH_ONLY").unwrap_or_default();
    for rep in 1..=reps {
        let grpc_clients: Vec<_> = (0..clients)
            .map(|_| {
                let config = ClientConfig { servers: vec![cluster.client_address()], ..Default::default() };
                Arc::new(tokio::sync::Mutex::new(Client::new(config).expect("client")))
            })
            .collect();
        let (grpc_clients, grpc_auctions) = (Arc::new(grpc_clients), Arc::clone(&auctions));
        let grpc_seconds = if only == "rest" { 0 } else { seconds };
        let grpc = measure(clients, grpc_seconds, move |client, amount| {
            let (grpc_clients, grpc_auctions) = (Arc::clone(&grpc_clients), Arc::clone(&grpc_auctions));
            async move {
                let mut bidder = grpc_clients[client].lock().await;
                let outcome = bidder.bid(&grpc_auctions[client], &format!("b{client}"), amount).await;
                outcome.is_ok_and(|outcome| outcome.verdict == Verdict::Success)
            }
        })
        .await;

        let http_clients: Arc<Vec<reqwest::Client>> = Arc::new((0..clients).map(|_| reqwest::Client::new()).collect());
        let (rest_auctions, addresses) = (Arc::clone(&auctions), Arc::clone(&http_addresses));
        let rest_seconds = if only == "grpc" { 0 } else { seconds };
        let rest = measure(clients, rest_seconds, move |client, amount| {
            let (http_clients, rest_auctions, addresses) =
                (Arc::clone(&http_clients), Arc::clone(&rest_auctions), Arc::clone(&addresses));
            async move {
                let url =
                    format!("http://{}/auctions/{}/bids", addresses[client % addresses.len()], rest_auctions[client]);
                let body = serde_json::json!({"participant_id": format!("b{client}"), "bid_price": amount});
                let response = http_clients[client].post(url).json(&body).send().await;
                response.is_ok_and(|response| response.status() == reqwest::StatusCode::CREATED)
            }
        })
        .await;
        let ratio = rest / grpc;
        ratios.push(ratio);
        println!("run {rep}: gRPC {grpc:.0} bids/s, REST {rest:.0} bids/s, REST/gRPC {ratio:.2}");
    }
    ratios.sort_by(f64::total_cmp);
    println!("median REST/gRPC {:.2}", ratios[ratios.len() / 2]);
}

/// Server-sent events: `GAVEL_BENCH_STREAMS` (default 1,000) open event
/// streams spread over the three nodes and over `GAVEL_BENCH_AUCTIONS`
/// auctions (default 1; stream `i` follows auction `i` mod that), while
/// bids go to the auctions in turn at `GAVEL_BENCH_RATE` a second (default
/// 20, held: 32 bidders, each bid sent at its time whether or not the
/// last was answered) for `GAVEL_BENCH_SECONDS`. The same bids run first
/// without the streams, for the bids' latency beside them. Each bid's
/// delivery to each stream is timed from the bid's invocation (an upper
/// bound on the delay after its commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn event_delivery_latency_with_many_open_streams() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio_stream::StreamExt as _;

    let (streams, auctions, rate, seconds) = (
        setting("GAVEL_BENCH_STREAMS", 1000) as usize,
        setting("GAVEL_BENCH_AUCTIONS", 1).max(1) as usize,
        setting("GAVEL_BENCH_RATE", 20).max(1),
        setting("GAVEL_BENCH_SECONDS", 10),
    );
    let mut spec = common::spec(55, 3, &["--duration", "1h"]);
    spec.http_base_port = Some(common::ports(55).base + 10);
    spec.log_filter = "warn".into();
    let cluster = LocalCluster::start(spec).await.expect("cluster starts");
    let config = ClientConfig { servers: vec![cluster.client_address()], ..Default::default() };
    let mut seller = Client::new(config.clone()).expect("client");
    let mut lots = Vec::new();
    for lot in 0..auctions {
        let create = CreateAuction::lasting("bench", &format!("lot {lot}"), "", 1, Duration::from_secs(3600));
        lots.push(seller.create_auction(create).await.expect("created").auction_id);
    }
    let lots = Arc::new(lots);

    // Bids at `rate` a second for `seconds`, amounts rising from `first`
    // (bid `n` on lot `n` mod auctions), each noted in `invoked` when sent;
    // the latency of each.
    let bid_at_rate = |first: u64, invoked: &Arc<Mutex<HashMap<u64, Instant>>>| {
        let (lots, config) = (Arc::clone(&lots), config.clone());
        let latencies: Arc<Mutex<hdrhistogram::Histogram<u64>>> =
            Arc::new(Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")));
        let total = rate * seconds;
        let pace = Duration::from_secs_f64(1.0 / rate as f64);
        let started = Instant::now();
        const BIDDERS: u64 = 32;
        let workers: Vec<_> = (0..BIDDERS)
            .map(|worker| {
                let (lots, invoked, latencies) = (Arc::clone(&lots), Arc::clone(invoked), Arc::clone(&latencies));
                let mut bidder = Client::new(config.clone()).expect("client");
                tokio::spawn(async move {
                    for n in (worker..total).step_by(BIDDERS as usize) {
                        tokio::time::sleep_until((started + pace * n as u32).into()).await;
                        let amount = first + n;
                        let at = Instant::now();
                        invoked.lock().expect("invoked").insert(amount, at);
                        let outcome =
                            bidder.bid(&lots[n as usize % lots.len()], "bidder", amount).await.expect("a bid");
                        assert_eq!(outcome.verdict, Verdict::Success);
                        latencies.lock().expect("latencies").saturating_record(at.elapsed().as_micros() as u64);
                    }
                })
            })
            .collect();
        (latencies, workers, total)
    };
    let quantiles = |histogram: &hdrhistogram::Histogram<u64>| {
        (histogram.value_at_quantile(0.5) as f64 / 1000.0, histogram.value_at_quantile(0.99) as f64 / 1000.0)
    };

    // Without the streams first.
    let (alone, workers, first_total) = bid_at_rate(1, &Arc::default());
    for worker in workers {
        worker.await.expect("a bidder");
    }
    let (alone_p50, alone_p99) = quantiles(&alone.lock().expect("latencies"));

    let delays: Arc<Mutex<hdrhistogram::Histogram<u64>>> =
        Arc::new(Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")));
    let invoked: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let connected = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    let mut readers = Vec::new();
    for stream in 0..streams {
        let address = cluster.http_address(stream % 3).expect("HTTP port");
        let url = format!("http://{address}/events?auction={}", lots[stream % auctions]);
        let (http, invoked, delays, connected) =
            (http.clone(), Arc::clone(&invoked), Arc::clone(&delays), Arc::clone(&connected));
        readers.push(tokio::spawn(async move {
            let response = http.get(url).send().await.expect("an event stream");
            let mut body = response.bytes_stream();
            let mut pending = String::new();
            let mut event = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    let line = line.trim_end();
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = name.to_string();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        if event == "progress" {
                            connected.fetch_add(1, Ordering::Relaxed);
                        } else if event == "bid" {
                            let bid: serde_json::Value = serde_json::from_str(data).expect("a bid");
                            let amount = bid["bid_price"].as_u64().expect("an amount");
                            let at = invoked.lock().expect("invoked").get(&amount).copied();
                            if let Some(at) = at {
                                let micros = at.elapsed().as_micros() as u64;
                                delays.lock().expect("delays").saturating_record(micros.max(1));
                            }
                        }
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) < streams as u64 {
        assert!(Instant::now() < deadline, "only {} streams connected", connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same bids beside the streams, above the amounts bid alone.
    let (beside, workers, bids) = bid_at_rate(first_total + 1, &invoked);
    for worker in workers {
        worker.await.expect("a bidder");
    }
    // The last bids' events arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in readers {
        reader.abort();
    }
    let (beside_p50, beside_p99) = quantiles(&beside.lock().expect("latencies"));
    let delays = delays.lock().expect("delays");
    let per_auction = (0..auctions).map(|lot| (streams + auctions - 1 - lot) / auctions).collect::<Vec<_>>();
    let expected: u64 = (0..bids).map(|n| per_auction[n as usize % auctions] as u64).sum();
    println!(
        "{streams} event streams over 3 nodes and {auctions} auctions, {bids} bids in {seconds} s at {rate}/s held: \
         {} deliveries of {expected} expected; from a bid's invocation to its event at a reader p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; bids p50 {alone_p50:.2} ms and p99 {alone_p99:.2} ms alone, p50 \
         {beside_p50:.2} ms and p99 {beside_p99:.2} ms beside the streams (p99 {:.2}x)",
        delays.len(),
        delays.value_at_quantile(0.5) as f64 / 1000.0,
        delays.value_at_quantile(0.99) as f64 / 1000.0,
        delays.max() as f64 / 1000.0,
        beside_p99 / alone_p99,
    );
}
