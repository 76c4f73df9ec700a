//! Formatting for people and for machines.

use serde_json::Value;

use crate::Format;

/// `println!` that ends the process quietly when stdout is closed (`confidant … | head`)
/// instead of panicking on the broken pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Prints an error: `error: …` with its causes on stderr, or a JSON error document on stdout.
pub(crate) fn print_error(err: &anyhow::Error, format: Format) {
    match format {
        Format::Human => {
            eprintln!("error: {err}");
            for cause in causes(err) {
                eprintln!("  caused by: {cause}");
            }
        }
        Format::Json => {
            let code = match err.downcast_ref::<confidant_attest::Error>() {
                Some(confidant_attest::Error::Rejected { .. }) => "evidence_rejected",
                Some(confidant_attest::Error::NotTrusted { .. }) => "not_trusted",
                Some(confidant_attest::Error::MissingEndorsement { .. }) => "missing_endorsement",
                Some(confidant_attest::Error::NoTee(_)) => "no_tee",
                Some(confidant_attest::Error::Io { .. }) => "io",
                _ => "malformed",
            };
            let causes = causes(err);
            let doc = serde_json::json!({
                "error": {"code": code, "message": err.to_string(), "causes": causes}
            });
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
}

/// The error's causes, leaving out those its previous message already ends with (errors that
/// both print and chain their source).
fn causes(err: &anyhow::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut previous = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.ends_with(&text) {
            out.push(text.clone());
        }
        previous = text;
    }
    out
}

/// Prints a JSON value as `key  value` lines, nested objects inline, in the value's field order.
pub(crate) fn print_fields(value: &Value, indent: usize) {
    let Value::Object(map) = value else {
        crate::outln!("{:indent$}{}", "", scalar(value));
        return;
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        crate::outln!("{:indent$}{k:width$}  {}", "", scalar(v));
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
        other => other.to_string(),
    }
}
