//! The `flow` command: see `flow --help`.

fn main() {
    let code = flow::cli::main();
    std::process::exit(code.code());
}
