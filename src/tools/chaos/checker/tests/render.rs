//! How a violation's operations are rendered for a person.

use super::*;

#[test]
fn render_violation_lists_each_operation() {
    let h = history(vec![
        success(0, 0, "bob", 50, (0, 10)),
        success(1, 0, "alice", 100, (1_000_020, 1_000_030)),
        in_doubt_bid(2, 2, "carol", 70, 1_000_025),
        read(3, 1, (1_000_040, 1_000_050), (50, "bob", 1)),
    ]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    let text = render_violation(&h, &violation);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), violation.operations.len(), "{text}");
    assert!(lines[3].starts_with("  op       3  client   1  result"), "{text}");
    assert!(text.contains("bid alice 100"), "{text}");
    assert!(text.contains("1.000020s"), "{text}");
    assert!(text.contains("1.000030s  -> SUCCESS, highest 100 by alice"), "{text}");
    assert!(text.contains("never  -> no answer (unknown)"), "{text}");
    assert!(text.contains("-> highest 50 by bob with 1 accepted bid"), "{text}");

    let missing = Violation { message: "x".into(), operations: vec![99] };
    assert!(render_violation(&h, &missing).contains("op 99: not in the history"));
}
