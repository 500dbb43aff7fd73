//! The crash tour (the command behind `log.txt`) runs and tells every step.

mod common;

use std::process::Command;

#[test]
fn the_crash_tour_log_shows_every_step_in_order() {
    let ports = common::ports(13);
    let tour = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["demo", "--script", "crash-tour", "--duration", "4s"])
        .args(["--base-port", &ports.base.to_string(), "--client-port", &ports.client.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the tour");
    // Where the tour keeps its servers' logs while it runs.
    let written = std::env::temp_dir().join(format!("gavel-demo-{}", tour.id()));
    let output = tour.wait_with_output().expect("the tour's output");
    assert!(!written.exists(), "the tour left {} behind", written.display());
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the tour failed: {}\n{log}", String::from_utf8_lossy(&output.stderr));

    let node = |i: u16| format!("127.0.0.1:{}", ports.base + i);
    let (first, second, third) = (node(0), node(1), node(2));
    // Each step, as a line that must appear after the previous one.
    let expected = [
        format!("{} leader    bootstrapped a new cluster; became leader", ports.base),
        format!("{} backup    joined as backup leader=\"{first}\"", ports.base + 1),
        format!("leaderQueue: [{second}, {third}]"),
        "alice          < SUCCESS: bid 100".to_string(),
        "bob            < SUCCESS: bid 150".to_string(),
        "alice          < FAIL: bid 120 is not higher than the highest bid 150 by bob".to_string(),
        format!("=== CRASH backup {third} (SIGKILL) ==="),
        format!("backup removed backup={third}"),
        format!("leaderQueue: [{second}]"),
        "bob            < SUCCESS: bid 250".to_string(),
        format!("=== CRASH leader {first} (SIGKILL) ==="),
        format!("{} leader    took over; became leader epoch=2", ports.base + 1),
        "alice          < SUCCESS: bid 300 by alice is now the highest".to_string(),
        "bob            < RESULT: auction default is running; highest bid 300 by alice".to_string(),
        format!("(answered by {second})"),
        format!("{} backup    joined as backup leader=\"{second}\"", ports.base),
        format!("leaderQueue: [{first}, {third}]"),
        "auction over auction=default winner=alice amount=300".to_string(),
        "alice          < FAIL: the auction is over".to_string(),
        format!("the winner is alice with 300 (answered by {second})"),
    ];
    // Column widths depend on the port numbers: compare with single spaces.
    let squeeze = |text: &str| text.split(' ').filter(|word| !word.is_empty()).collect::<Vec<_>>().join(" ");
    let squeezed = log.lines().map(squeeze).collect::<Vec<_>>().join("\n");
    let mut rest: &str = &squeezed;
    for needle in expected.iter().map(|line| squeeze(line)) {
        match rest.find(needle.as_str()) {
            Some(at) => rest = &rest[at + needle.len()..],
            None => panic!("the log lacks, at this point, {needle:?}:\n{log}"),
        }
    }
}
