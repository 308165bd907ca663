//! What only the local tools need (the producer, the local event source mapping, the operator's
//! tool): never linked into a function.

/// What to add to a request's error when it never reached its endpoint: the endpoint, and, for a
/// local one (`AWS_ENDPOINT_URL` on loopback), that the local stack is down and how to start it.
/// Empty for any other error. `error` is the error's whole chain ([`crate::error::chain`]).
pub fn unreachable_hint(error: &str) -> String {
    let connect = [
        "dispatch failure",
        "Connection refused",
        "tcp connect error",
    ];
    if !connect.iter().any(|c| error.contains(c)) {
        return String::new();
    }
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.contains("127.0.0.1") || url.contains("localhost") => {
            format!(" (nothing answers at {url}; the local stack is down: start it with 'make up')")
        }
        Ok(url) => format!(" (nothing answers at {url}, the AWS_ENDPOINT_URL)"),
        Err(_) => " (AWS did not answer: check the network and AWS_REGION)".to_owned(),
    }
}
