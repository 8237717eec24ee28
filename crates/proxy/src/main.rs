//! The `moat` command.

fn main() -> std::process::ExitCode {
    moat::main()
}
