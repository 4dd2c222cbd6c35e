use clap::Parser;

// The admission path is allocation-heavy JSON work on many threads; mimalloc keeps it off
// glibc's arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = scimgate::cli::Cli::parse();
    match scimgate::cmd::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<scimgate::cmd::Denied>() => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("scimgate: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
