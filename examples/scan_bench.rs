//! Throughput of the secret scanner on 10 MiB of clean traffic-like data, next to a plain
//! byte count over the same buffer as a memory-bandwidth baseline. Prints figures only.
//!
//! Run: `cargo run --release --example scan_bench`

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use bot_bottle::scan::Scanner;

const SIZE: usize = 10 << 20;

/// Deterministic pseudo-random bytes (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn prose(rng: &mut Rng, out: &mut String) {
    let words = [
        "the",
        "build",
        "failed",
        "because",
        "config",
        "value",
        "request",
        "returns",
        "agent",
        "container",
        "network",
        "policy",
        "allows",
        "only",
        "declared",
        "hosts",
        "and",
        "tests",
    ];
    for _ in 0..40 {
        out.push_str(rng.pick(&words));
        out.push(' ');
    }
    out.push('\n');
}

fn json(rng: &mut Rng, out: &mut String) {
    out.push_str(r#"{"model":"m-1","messages":[{"role":"user","content":"fix \"main.rs\"\nline\/2 \u00e9"},"#);
    out.push_str(&format!(
        r#"{{"id":{},"path":"src\/lib.rs"}}]}}"#,
        rng.next() % 10_000
    ));
    out.push('\n');
}

fn encoded(rng: &mut Rng, out: &mut String) {
    let raw: Vec<u8> = (0..300).map(|_| (rng.next() >> 24) as u8).collect();
    out.push_str("blob=");
    out.push_str(&base64::engine::general_purpose::STANDARD.encode(&raw));
    out.push_str(&format!(
        " sha={:016x}{:016x}%20done\n",
        rng.next(),
        rng.next()
    ));
}

fn build(mixed: bool) -> Vec<u8> {
    let mut rng = Rng(0x5eed);
    let mut out = String::with_capacity(SIZE + 4096);
    while out.len() < SIZE {
        match (mixed, rng.next() % 4) {
            (true, 0) => json(&mut rng, &mut out),
            (true, 1) => encoded(&mut rng, &mut out),
            _ => prose(&mut rng, &mut out),
        }
    }
    out.truncate(SIZE);
    out.into_bytes()
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn time<T>(f: impl Fn() -> T) -> f64 {
    let _ = black_box(f()); // warm-up (also compiles the rules once)
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        black_box(f());
    }
    start.elapsed().as_secs_f64() / f64::from(runs)
}

fn main() {
    let scanner = Scanner::new();
    for (name, buf) in [
        ("clean prose", build(false)),
        ("mixed json/base64/hex", build(true)),
    ] {
        let base = time(|| buf.iter().filter(|&&b| b == b'\n').count());
        let one = time(|| scanner.scan(&buf));
        let streamed = time(|| {
            let mut s = scanner.stream();
            buf.chunks(64 << 10).find_map(|c| s.feed(c))
        });
        assert!(scanner.scan(&buf).is_none(), "benchmark data must be clean");
        println!("{name} ({} MiB):", buf.len() >> 20);
        println!(
            "  byte-count baseline   {:>9.1} MB/s",
            mbps(buf.len(), base)
        );
        println!("  scan (one shot)       {:>9.1} MB/s", mbps(buf.len(), one));
        println!(
            "  stream (64 KiB feeds) {:>9.1} MB/s",
            mbps(buf.len(), streamed)
        );
    }
}
