//! The README's five-minute tour, run as written: its `sh` blocks go to bash against a live
//! server (with `cargo run --release --` mapped to the built binary and the tour's addresses
//! to the test server's), and its `text` blocks' key lines must appear in what they print. If
//! the README changes, this test runs the new text.

use crate::support::TestServer;
use std::process::Command;

fn tour_blocks(readme: &str) -> (Vec<String>, Vec<String>) {
    // The tour ends where the next section starts.
    let start = readme.find("## Try it in five minutes").expect("the tour section");
    let end = readme[start..].find("\n## ").map(|e| start + e).unwrap_or(readme.len());
    let (mut sh, mut text) = (Vec::new(), Vec::new());
    let mut lines = readme[start..end].lines();
    while let Some(l) = lines.next() {
        let kind = match l.trim() {
            "```sh" => &mut sh,
            "```text" => &mut text,
            _ => continue,
        };
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        kind.push(block.join("\n"));
    }
    (sh, text)
}

// The tour's commands run as child processes that call this process's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let (sh, text) = tour_blocks(&readme);
    assert!(
        sh.len() >= 3 && text.len() >= 3,
        "the tour has its commands and outputs"
    );
    // The tour runs in a directory holding ./scimgate-data, as after `serve --dev` there.
    let cwd = tempfile::tempdir().expect("tempdir");
    let data_dir = cwd.path().join("scimgate-data");
    let s = TestServer::start_in(tempfile::TempDir::new_in(cwd.path()).expect("dir"), |a| {
        a.data_dir = Some(data_dir)
    })
    .await;
    let workflow = cwd.path().join("examples/tour/workflow.yaml");
    std::fs::create_dir_all(workflow.parent().expect("parent")).expect("mkdir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tour/workflow.yaml"),
        workflow,
    )
    .expect("copy");
    let scim_port = s.scim_port();
    let mut script = String::from("cargo() { shift 3; \"$SCIMGATE_BIN\" \"$@\"; }\n");
    for block in &sh {
        for line in block.lines() {
            if line.contains("serve --dev") {
                continue; // the test server is already up
            }
            let line = if line.trim_start().starts_with("TOKEN=") {
                format!("TOKEN={}", s.token)
            } else {
                line.replace("localhost:9443", &format!("localhost:{scim_port}"))
            };
            script.push_str(&line);
            script.push('\n');
        }
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd.path())
        .env("SCIMGATE_BIN", env!("CARGO_BIN_EXE_scimgate"))
        .env("SCIMGATE_REVIEW_URL", &s.admission)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("tour output:\n{stdout}");
    // Each output block's first line (and any line without an elided value) must show up.
    for block in text.iter().skip(1) {
        for line in block.lines().filter(|l| !l.contains('…') && !l.trim().is_empty()) {
            assert!(
                stdout.contains(line.trim_end()),
                "README promises\n{line}\nbut the tour printed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let first = block.lines().next().unwrap_or_default();
        let stem = first.split('…').next().unwrap_or_default().trim_end();
        assert!(stdout.contains(stem), "missing '{stem}' in:\n{stdout}");
    }
}
