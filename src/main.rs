fn main() -> std::process::ExitCode {
    tracegraph::cli::main()
}
