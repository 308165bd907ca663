//! The binary as a person starts it by mistake: outside Lambda, with wrong settings. It says so
//! once, naming every setting and the form each expects, and exits with status 1.

use std::process::Command;

#[test]
fn a_wrong_start_is_said_once_with_every_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_email-notifier"))
        .env_clear()
        .env("MAX_CONCURRENCY", "-1")
        .env("RUST_LOG", "verbose")
        .env("SENDER_ADDRESS", "shop@example.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.matches("start-up failed").count(), 1, "{text}");
    for expected in [
        "AWS_LAMBDA_RUNTIME_API is not set",
        "'make watch'",
        "7 settings are wrong:",
        "RUST_LOG=verbose is not valid: expected a level (error, warn, info, debug, trace) or a tracing filter",
        "MAX_CONCURRENCY=-1 is not valid: expected a whole number from 1 to 1024",
        "DLQ_URL is missing",
        "IDEMPOTENCY_TABLE is missing",
        "TEMPLATE_NAME is missing",
        "REJECTED_TEMPLATE_NAME is missing",
        "PAYMENT_FAILED_TEMPLATE_NAME is missing",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(
        !text.contains("SENDER_ADDRESS"),
        "a setting that is right is not named:\n{text}"
    );
    assert!(!text.contains("\\\""), "no escaped quotes:\n{text}");
}
