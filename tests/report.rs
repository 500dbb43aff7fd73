//! The committed report PDF was built from the committed Markdown: the build
//! script (`scripts/build-report.sh`) writes the Markdown's SHA-256 into the
//! PDF's metadata, and this test recomputes it.

use sha2::{Digest, Sha256};

#[test]
fn the_report_pdf_matches_its_markdown() {
    let root = env!("CARGO_MANIFEST_DIR");
    let markdown = std::fs::read(format!("{root}/report/report.md")).expect("report.md");
    let pdf = std::fs::read(format!("{root}/report/report.pdf")).expect("report.pdf");
    let digest: String = Sha256::digest(&markdown).iter().map(|byte| format!("{byte:02x}")).collect();
    let stamp = format!("source-sha256:{digest}");
    assert!(
        pdf.windows(stamp.len()).any(|window| window == stamp.as_bytes()),
        "report.pdf was not built from this report.md: run scripts/build-report.sh"
    );
}

#[test]
fn the_report_has_exactly_the_four_sections() {
    let root = env!("CARGO_MANIFEST_DIR");
    let markdown = std::fs::read_to_string(format!("{root}/report/report.md")).expect("report.md");
    let sections: Vec<&str> = markdown.lines().filter(|line| line.starts_with("# ")).collect();
    assert_eq!(
        sections,
        [
            "# 1. Introduction",
            "# 2. Protocol",
            "# 3. Correctness 1: linearizable without failures",
            "# 4. Correctness 2: under crashes"
        ]
    );
}
