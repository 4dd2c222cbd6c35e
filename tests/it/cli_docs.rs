//! docs/cli.md is the CLI reference, generated from the clap definitions; this test fails when
//! they drift apart. Regenerate with `SCIMGATE_UPDATE_DOCS=1 cargo test --test it cli_reference`.

use clap::CommandFactory;

fn render(cmd: &mut clap::Command, path: &str, out: &mut String) {
    // Name the environment variables, never the values this process happens to have.
    let mut owned = std::mem::take(cmd).mut_args(|a| a.hide_env_values(true));
    std::mem::swap(cmd, &mut owned);
    let help = cmd.render_long_help().to_string();
    out.push_str(&format!("## `{path}`\n\n```text\n{}\n```\n\n", help.trim_end()));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    for name in names {
        if let Some(sub) = cmd.find_subcommand_mut(&name) {
            render(sub, &format!("{path} {name}"), out);
        }
    }
}

#[test]
fn cli_reference_matches_clap() {
    let mut cmd = scimgate::cli::Cli::command().term_width(100);
    let mut text = String::from(
        "# scimgate command-line reference\n\nGenerated from the program's own definitions (see tests/it/cli_docs.rs); every flag of\n`serve` can also be set through the environment variable shown in brackets.\n\n",
    );
    render(&mut cmd, "scimgate", &mut text);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
    if std::env::var_os("SCIMGATE_UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).expect("docs dir");
        std::fs::write(path, &text).expect("write docs/cli.md");
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        current == text,
        "docs/cli.md is out of date: run SCIMGATE_UPDATE_DOCS=1 cargo test --test it cli_reference"
    );
}
