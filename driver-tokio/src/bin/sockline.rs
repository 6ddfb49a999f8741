//! The `sockline` command: see `sockline --help`.

fn main() -> std::process::ExitCode {
    sockline_tokio::cli::main()
}
