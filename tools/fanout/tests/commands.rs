//! The local commands as a person meets them when something is off: the stack down, a sample that
//! is not there. Each says so in one line, and what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DOWN: &str = "the local stack is down: start it with 'make up'";

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `program` from the repository's root with its own (empty) stack state, as on a machine
/// where nothing is up.
fn run(program: &Path, args: &[&str]) -> Output {
    let state = std::env::temp_dir().join(format!("stack-state-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    Command::new(program)
        .args(args)
        .current_dir(root())
        .env("LOCAL_STATE", &state)
        .output()
        .unwrap()
}

/// It failed, saying `expected` in one line, and nothing else.
fn one_line(out: &Output, expected: &str) {
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line, not:\n{err}");
    assert!(err.contains(expected), "{expected:?} not in {err}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn every_command_says_the_stack_is_down() {
    let stack = root().join("scripts/stack.sh");
    for args in [
        &["dlq"][..],
        &["redrive", "--dry-run"],
        &["snapshot"],
        &["produce", "generate", "--orders", "1"],
        &["invoke", "email-notifier", "order-placed"],
    ] {
        one_line(&run(&stack, args), DOWN);
    }
}

#[test]
fn a_missing_sample_names_the_paths_tried() {
    let fanout = Path::new(env!("CARGO_BIN_EXE_fanout"));
    let out = run(fanout, &["invoke", "email-notifier", "order-placd"]);
    one_line(
        &out,
        "no event file events/order-placd or events/order-placd.json; the samples are: ",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("order-placed"));
}

#[test]
fn a_sample_is_found_with_or_without_json() {
    // The sample is found; then the stack is down, which is the next thing it says.
    let fanout = Path::new(env!("CARGO_BIN_EXE_fanout"));
    for name in ["order-placed", "order-placed.json"] {
        one_line(&run(fanout, &["invoke", "email-notifier", name]), DOWN);
    }
}
