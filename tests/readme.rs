//! Every shell example of the README's short tour, run as written against a
//! local cluster shaped as the demo's (three nodes, each with an HTTP port):
//! `gavel` is this build on the PATH, `GAVEL_SERVER` points the CLI at the
//! test's client port, and the tour's HTTP ports (8080-8082) become the
//! test's. Each command must succeed (exit 0, and no error in what it
//! printed); the two that stream (`gavel watch`, `curl -N`) must print the
//! event of a bid made while they run.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// The lines of the `sh` blocks of the README's section `heading`.
fn shell_examples(heading: &str) -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme.find(heading).unwrap_or_else(|| panic!("the README has {heading:?}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in section.lines().map(str::trim) {
        if line.starts_with("```") {
            in_block = !in_block && line == "```sh";
        } else if in_block && !line.is_empty() {
            lines.push(line.to_string());
        }
    }
    lines
}

/// A command of the tour as this test runs it: through bash, with this
/// build's `gavel` first on the PATH and the tour's ports made the test's.
fn command(line: &str, ports: &common::Ports) -> Command {
    let mut line = line.to_string();
    for node in 0..3 {
        line = line.replace(&format!("localhost:{}", 8080 + node), &format!("127.0.0.1:{}", ports.base + 10 + node));
    }
    let binary_dir = std::path::Path::new(env!("CARGO_BIN_EXE_gavel")).parent().expect("a directory");
    let path = format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("bash");
    command.args(["-c", &line]).env("PATH", path).env("GAVEL_SERVER", format!("127.0.0.1:{}", ports.client));
    command
}

/// A streaming command, killed when the test is done with it.
struct Streaming {
    child: Child,
    printed: Arc<Mutex<String>>,
}

impl Streaming {
    fn start(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("it starts");
        let printed = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&printed);
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut chunk) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        });
        Streaming { child, printed }
    }

    /// Waits until it printed `words`.
    fn wait_for(&self, words: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.printed.lock().unwrap().contains(words) {
            assert!(Instant::now() < deadline, "{words:?} never came; it printed: {}", self.printed.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command that ends, and returns what it printed.
fn run(line: &str, ports: &common::Ports) -> String {
    let output = command(line, ports).output().expect("it runs");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "`{line}` failed ({}): {printed}{errors}", output.status);
    assert!(!printed.contains("\"error\""), "`{line}` answered an error: {printed}");
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shell_example_of_the_readmes_tour_works_against_a_local_cluster() {
    let slot = 93;
    let ports = common::ports(slot);
    let mut spec = common::spec(slot, 3, &["--duration", "1h"]);
    spec.http_base_port = Some(ports.base + 10);
    let cluster = gavel::tools::cluster::LocalCluster::start(spec).await.expect("cluster");
    cluster.wait_for_leader(DEADLINE).await.expect("a leader");

    let examples = shell_examples("## A short tour");
    assert!(examples.len() >= 10, "the tour has its examples: {examples:?}");
    let streams = tokio::task::block_in_place(|| {
        let mut streams = Vec::new();
        for line in &examples {
            if line.starts_with("gavel watch") || line.starts_with("curl -sN") {
                streams.push((line.clone(), Streaming::start(command(line, &ports))));
                continue;
            }
            run(line, &ports);
        }
        streams
    });
    assert_eq!(streams.len(), 2, "the tour streams twice: {examples:?}");
    // A bid on each streamed auction, made while they stream: each prints it.
    tokio::task::block_in_place(|| {
        run("gavel bid 30 --id zoe --auction a1", &ports);
        run(
            "curl -s -X POST localhost:8080/auctions/a2/bids -d '{\"participant_id\": \"zoe\", \"bid_price\": 20}'",
            &ports,
        );
        for (line, stream) in &streams {
            stream.wait_for(if line.starts_with("gavel") { "30" } else { "\"bid_price\":20" });
            stream.wait_for("zoe");
        }
    });
}
