fn main() -> std::process::ExitCode {
    eprintln!("bot-bottle-egress: error: not available yet");
    std::process::ExitCode::from(1)
}
