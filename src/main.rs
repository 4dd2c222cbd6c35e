use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = scimgate::cli::Cli::parse();
    match scimgate::app::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scimgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
