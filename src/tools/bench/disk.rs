//! The disk's own cost: the latency of one small append and `fdatasync`,
//! measured on the directory the nodes keep their logs in, so that a
//! durable run's figures read against what the disk allows.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// Appends 100 bytes and syncs, `samples` times, in a scratch file under
/// `dir`; returns the median and the 99th percentile, in microseconds.
pub(crate) fn fsync_latency(dir: &Path, samples: usize) -> std::io::Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("gavel-bench-fsync-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        let record = [0x2a_u8; 100];
        let mut micros = Vec::with_capacity(samples.max(1));
        for _ in 0..samples.max(1) {
            let started = Instant::now();
            file.write_all(&record)?;
            file.sync_data()?;
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
        micros.sort_by(f64::total_cmp);
        let at = |quantile: f64| micros[((micros.len() - 1) as f64 * quantile).round() as usize];
        Ok((at(0.5), at(0.99)))
    })();
    let _ = std::fs::remove_file(&path);
    result
}
