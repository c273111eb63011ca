//! Engine tests need a Docker engine: they compile as `#[ignore]`d (with the reason shown by
//! `cargo test`) unless `BOT_BOTTLE_ENGINE_TESTS=1` was set for the build, so a run without an
//! engine reports them as ignored instead of passing silently.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(engine_tests)");
    println!("cargo::rerun-if-env-changed=BOT_BOTTLE_ENGINE_TESTS");
    if std::env::var("BOT_BOTTLE_ENGINE_TESTS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=engine_tests");
    }
}
