fn main() -> std::process::ExitCode {
    bot_bottle::cli::main()
}
